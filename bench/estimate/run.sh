#!/usr/bin/env bash
# Estimated against realised accuracy: driftline's confidence-based
# estimate against NannyML's CBPE on the same windows (wine quality shifted,
# scikit-learn's breast cancer with a seeded covariate shift): mean absolute
# error against the labels' accuracy per window, and time per window.
#
#   bench/estimate/run.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/estimate
WORK=$HERE/work
mkdir -p "$WORK"
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/.venv/bin/python" -c 'import nannyml, sklearn' 2>/dev/null; then
  python3 -m venv "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/requirements.txt"
fi
"$HERE/.venv/bin/python" "$HERE/prepare.py" "$WORK"
# driftline's own code at opt-level 3 as in a release build (its
# dependencies as the dev profile builds them: the estimate calls none).
cargo run --quiet --config 'profile.dev.package.driftline.opt-level=3' \
  --example estimate_bench -- "$WORK"
"$HERE/.venv/bin/python" "$HERE/compare.py" "$WORK"
