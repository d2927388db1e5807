# Sourced by the serving scripts that reuse what floor.sh leaves in
# bench/serving/work (the trained wine-quality artifact, the 1-row body,
# driftline's answer to it, the no-op floor server): where each lies, and
# a check that the ones a script needs are there.
#
#   . bench/serving/floor-work.sh; floor_work_needs floor-body.json serving_floor
WORK=bench/serving/work
ARTIFACT="file://$PWD/$WORK/artifacts/wine-quality/v1/"
BODY=$WORK/floor-body.json
PORT=${PORT:-18080}
PATH_INFER=/v2/models/wine-quality/infer
URL=http://127.0.0.1:$PORT$PATH_INFER

floor_work_needs() {
  local f
  for f in "$@"; do
    [ -e "$WORK/$f" ] || { echo "$WORK/$f is missing: run bench/serving/floor.sh first" >&2; exit 2; }
  done
}
