#!/usr/bin/env bash
# Builds the driftline binary the benchmarks measure and copies it to $1.
#
# driftline's own code is compiled at opt-level 3, as in a release build (the
# dependencies already are, per [profile.dev.package."*"]); debug assertions
# and overflow checks stay on, so the figures are, if anything, pessimistic.
# It reuses the dev profile's dependency builds instead of a full release
# build, which takes over half an hour on two cores. Overriding the profile
# by environment leaves the test build's own artifacts untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/build.sh OUT-PATH}
mkdir -p "$(dirname "$out")"
# DRIFTLINE_BIN=target/release/driftline measures a binary built elsewhere
# (e.g. `cargo build --release`) instead.
if [ -n "${DRIFTLINE_BIN:-}" ]; then
  cp "$DRIFTLINE_BIN" "$out.tmp" && mv "$out.tmp" "$out"
  exit 0
fi
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --quiet --bin driftline
cp "${CARGO_TARGET_DIR:-target}/debug/driftline" "$out.tmp" && mv "$out.tmp" "$out"
