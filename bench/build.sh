#!/usr/bin/env bash
# Builds the driftline binary the benchmarks measure and copies it to $1;
# with a second argument, builds that example instead (the serving floor:
# `bench/build.sh OUT serving_floor`), with the same profile, so both sides
# of a comparison are compiled alike. The one place the benchmarks build.
#
# PROFILE=dev (the default): driftline's own code is compiled at opt-level 3,
# as in a release build (the dependencies already are, per
# [profile.dev.package."*"]); debug assertions and overflow checks stay on,
# in driftline's code and the dependencies', so the figures are, if
# anything, pessimistic. It reuses the dev profile's dependency builds
# instead of a full release build, which takes 20 to 40 minutes on two
# cores. Overriding the profile by environment leaves the test build's own
# artifacts untouched.
#
# PROFILE=release: `cargo build --release`, what docker/Dockerfile ships (no
# debug assertions, no overflow checks, 16 codegen units); a separate
# CARGO_TARGET_DIR keeps its builds apart from the tests'.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/build.sh OUT-PATH [EXAMPLE]}
example=${2:-}
mkdir -p "$(dirname "$out")"
# DRIFTLINE_BIN=target/release/driftline measures a binary built elsewhere
# instead (the driftline binary only, not an example).
if [ -z "$example" ] && [ -n "${DRIFTLINE_BIN:-}" ]; then
  cp "$DRIFTLINE_BIN" "$out.tmp" && mv "$out.tmp" "$out"
  exit 0
fi
what=(--bin driftline)
[ -n "$example" ] && what=(--example "$example")
case "${PROFILE:-dev}" in
  dev)
    CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo build --quiet "${what[@]}"
    dir=debug ;;
  release)
    cargo build --quiet --release "${what[@]}"
    dir=release ;;
  *) echo "PROFILE must be dev or release" >&2; exit 2 ;;
esac
built=${CARGO_TARGET_DIR:-target}/$dir/${example:+examples/}${example:-driftline}
cp "$built" "$out.tmp" && mv "$out.tmp" "$out"
