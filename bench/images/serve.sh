#!/usr/bin/env bash
# Image serving: driftline serve against MLServer serving THE SAME CNN.
#
# One driftline CNN is trained on the digits images (scikit-learn's 8x8 set
# upscaled to SIZE x SIZE grayscale PNG files, as bench/images/run.sh). driftline
# serves its artifact; MLServer serves it through a custom Python runtime
# (torch_artifact.py: a PyTorch module with the same layers and driftline's
# weights read from the artifact's weights.safetensors, and the manifest's
# preprocessing). Both take PNG files in one OIP BYTES tensor over REST JSON
# (base64, the same body) and answer classes and probabilities. Before any
# timing, every test image is sent to both and their classes must agree.
#
# Then wrk (as bench/serving) on loopback, 1-image and 32-image requests,
# driftline, MLServer, then driftline on one thread (one async worker, candle
# on one thread; MLServer runs inference in one Python process on one torch
# thread), alternated, the same load: images/s, p50 and p99,
# and the CPU split of each window: CPU-seconds per second of wall time
# (cores busy) used by the server, by wrk, and by everything else on the
# machine (other builds), from /proc.
#
#   bash bench/images/serve.sh               (SIZE=32 EPOCHS=15 DURATION=10s CONNECTIONS=16)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/images
WORK=$HERE/work
SIZE=${SIZE:-32}
EPOCHS=${EPOCHS:-15}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-2}
mkdir -p "$WORK"

command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
# torch comes from the system's site packages (bench/training/requirements.txt).
python3 -c "import sklearn, torch" 2>/dev/null || python3 -m pip install --quiet -r bench/training/requirements.txt
if [ ! -x "$HERE/.venv/bin/mlserver" ]; then
  python3 -m venv --system-site-packages "$HERE/.venv"
  "$HERE/.venv/bin/pip" install --quiet -r "$HERE/serve-requirements.txt"
fi
PY=$HERE/.venv/bin/python

bench/build.sh "$WORK/driftline"
BIN=$WORK/driftline
rm -rf "$WORK/digits" "$WORK/artifact" "$WORK/mlserver"
python3 tests/fixtures/digits_images.py "$WORK/digits" --train 1400 --test 397 --size "$SIZE" >/dev/null
cat > "$WORK/model.yaml" <<YAML
apiVersion: driftline.dev/v1alpha1
kind: Model
metadata: {name: digits}
spec:
  task: classification
  data:
    source: $PWD/$WORK/digits/train
    format: images
    target: digit
    validationFraction: 0.1
    images: {height: $SIZE, width: $SIZE, channels: grayscale}
  architecture: {type: cnn, convBlocks: [{channels: 16}, {channels: 32}], hiddenLayers: [64]}
  training: {epochs: $EPOCHS, batchSize: 32, learningRate: 0.005, seed: 1}
  gate:
    testSet: $PWD/$WORK/digits/test/index.csv
    metrics: [{name: accuracy, min: 0.0}]
YAML
ARTIFACT="file://$PWD/$WORK/artifact/"
RUST_LOG=warn "$BIN" train -c "$WORK/model.yaml" --out "$ARTIFACT" >/dev/null
"$PY" "$HERE/serve_prepare.py" prepare "$WORK/artifact" "$WORK/digits/test" "$WORK"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { for _ in $(seq 1 600); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; echo "not ready: $1" >&2; return 1; }

RUST_LOG=warn "$BIN" serve --artifact "$ARTIFACT" --name digits --host 127.0.0.1 --port 18180 >"$WORK/driftline.log" 2>&1 &
DL=$!
pids+=("$DL")
"$HERE/.venv/bin/mlserver" start "$WORK/mlserver" >"$WORK/mlserver.log" 2>&1 &
ML=$!
pids+=("$ML")
# The same server on one thread (one async worker, candle on one thread), as
# MLServer runs inference in one Python process.
RUST_LOG=warn RAYON_NUM_THREADS=1 "$BIN" --worker-threads 1 serve --artifact "$ARTIFACT" --name digits --host 127.0.0.1 --port 18184 >"$WORK/driftline-1t.log" 2>&1 &
DL1=$!
pids+=("$DL1")
wait_ready http://127.0.0.1:18180/v2/health/ready
wait_ready http://127.0.0.1:18184/v2/health/ready
wait_ready http://127.0.0.1:18181/v2/models/digits/ready
DRIFTLINE_URL=http://127.0.0.1:18180/v2/models/digits/infer
MLSERVER_URL=http://127.0.0.1:18181/v2/models/digits/infer
ONE_URL=http://127.0.0.1:18184/v2/models/digits/infer
"$PY" "$HERE/serve_prepare.py" verify "$WORK/digits/test" "$DRIFTLINE_URL" "$MLSERVER_URL" "$ONE_URL"

ticks() { # pid → CPU ticks (user + system) of the process and its descendants
  local t c
  t=$(awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0)
  for c in $(pgrep -P "$1" || true); do t=$((t + $(ticks "$c"))); done
  echo "$t"
}
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; } # busy ticks, all cores

load() { # server-pid url body → "rps= p50_us= p99_us= errors= requests= server= wrk= other="
  local s0 m0 s1 m1 start end out
  s0=$(ticks "$1"); m0=$(machine); start=$(date +%s.%N)
  out=$(BODY_FILE="$3" /usr/bin/time -f 'WRKCPU %U %S' wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/serving/post.lua "$2" 2>&1)
  end=$(date +%s.%N); s1=$(ticks "$1"); m1=$(machine)
  python3 - "$out" "$s0" "$s1" "$m0" "$m1" "$start" "$end" "$(getconf CLK_TCK)" <<'PY'
import sys
out, s0, s1, m0, m1, start, end, hz = sys.argv[1:]
hz, wall = float(hz), float(end) - float(start)
result = next(l for l in out.splitlines() if l.startswith("RESULT ")).split(" ", 1)[1]
u, s = next(l for l in out.splitlines() if l.startswith("WRKCPU ")).split()[1:]
server = (int(s1) - int(s0)) / hz / wall
wrk = (float(u) + float(s)) / wall
other = max((int(m1) - int(m0)) / hz / wall - server - wrk, 0.0)
print(f"{result} server={server:.2f} wrk={wrk:.2f} other={other:.2f}")
PY
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
row() { # images server result
  printf '%-7s %-10s %10.1f %10s %10s %10s %7s %7.2f %5.2f %6.2f\n' "$1" "$2" \
    "$(python3 -c "print(float('$(field "$3" rps)') * $1)")" "$(field "$3" rps)" \
    "$(field "$3" p50_us)" "$(field "$3" p99_us)" "$(field "$3" errors)" \
    "$(field "$3" server)" "$(field "$3" wrk)" "$(field "$3" other)"
}

echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION per row, REST JSON, BYTES PNG ${SIZE}x$SIZE; cores busy per second: server, wrk, other ($(nproc) cores)"
printf '%-7s %-10s %10s %10s %10s %10s %7s %7s %5s %6s\n' images server "images/s" "req/s" "p50 µs" "p99 µs" errors server wrk other
for n in 1 32; do
  # Warm both up, then measure, alternated.
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s bench/serving/post.lua "$DRIFTLINE_URL" >/dev/null
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s bench/serving/post.lua "$MLSERVER_URL" >/dev/null
  BODY_FILE="$WORK/body-$n.json" wrk -t1 -c2 -d2s -s bench/serving/post.lua "$ONE_URL" >/dev/null
  d=$(load "$DL" "$DRIFTLINE_URL" "$WORK/body-$n.json")
  m=$(load "$ML" "$MLSERVER_URL" "$WORK/body-$n.json")
  w=$(load "$DL1" "$ONE_URL" "$WORK/body-$n.json")
  row "$n" driftline "$d"
  row "$n" mlserver "$m"
  row "$n" dl-1thread "$w"
  python3 - "$d" "$w" "$m" "$n" <<'PY'
import sys
def parse(s): return {k: float(v) for k, v in (kv.split("=") for kv in s.split())}
d, w, m, n = parse(sys.argv[1]), parse(sys.argv[2]), parse(sys.argv[3]), sys.argv[4]
for label, x in (("ratio", d), ("ratio-1t", w)):
    print(f"{n:<7} {label:<10} {x['rps']/m['rps']:9.1f}x {'':>10} {m['p50_us']/x['p50_us']:9.1f}x {m['p99_us']/x['p99_us']:9.1f}x"
          "   (images/s: driftline/mlserver; latency: mlserver/driftline)")
PY
done
