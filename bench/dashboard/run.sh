#!/usr/bin/env bash
# Dashboard: server time and weight of a Model page with 1 000 versions and
# 10 000 drift windows (11 features: 110 000 readings) on a SQLite registry,
# served over loopback from the embedded API server's Model. Prints one JSON
# line; RESULTS.md has the figures and the method.
#
#   bash bench/dashboard/run.sh [VERSIONS] [WINDOWS] [FEATURES] [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# driftline's own code at opt-level 3, as bench/build.sh builds the binary.
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --quiet --example dashboard_bench -- \
  "${1:-1000}" "${2:-10000}" "${3:-11}" "${4:-30}"
