#!/usr/bin/env bash
# Drift: (1) driftline's sketch update + every statistic vs Evidently's
# data-drift report on 100 000 x 20 rows, and the largest difference between
# their values on the same bins; (2) drift verdicts on the bundled synthetic
# pipeline's 500-row windows, driftline vs Evidently vs NannyML: false alarms,
# detection delay, per-feature agreement, time.
#
#   bench/drift/run.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/drift
WORK=$HERE/work
mkdir -p "$WORK"
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import evidently, nannyml' 2>/dev/null; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
# driftline's own code at opt-level 3 as in a release build (see bench/build.sh).
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --quiet --example drift_bench -- "$WORK"
"$HERE/.venv/bin/python" "$HERE/evidently_drift.py" "$WORK"
CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo run --quiet --example drift_windows -- "$WORK"
"$HERE/.venv/bin/python" "$HERE/compare_windows.py" "$WORK"
