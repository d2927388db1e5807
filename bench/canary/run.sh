#!/usr/bin/env bash
# Sequential against threshold against a Kayenta-style Mann-Whitney, on the
# same simulated canaries (#20's benchmark): false promotions at the margin,
# false rollbacks when the versions are equal, and median canary requests to a
# rollback at twice the harm. The figures are counts, not times, so the plain
# debug build is enough (the same code decides in any profile).
#
#   bash bench/canary/run.sh            (RUNS=10000)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-10000}
OUT=${OUT:-$(mktemp -d)}
python3 -c "import scipy" 2>/dev/null || python3 -m pip install --quiet scipy
cargo run --quiet --example canary_sim -- "$OUT" "$RUNS"
python3 bench/canary/mannwhitney.py "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
d = json.load(open(f"{out}/driftline.json"))
mw = json.load(open(f"{out}/mannwhitney.json"))
s = d["setup"]
print(f"stable error rate {s['stable_error_rate']}, margin +{s['margin']}, alpha {s['alpha']}, "
      f"{s['canary_per_poll']} canary / {s['stable_per_poll']} stable requests per poll, "
      f"pause {s['pause_polls']} polls, at most {s['polls']} polls")
print("| method | false promotions at the margin | false rollbacks, equal versions | rolled back at 2x harm | median canary requests to rollback at 2x harm | undecided at the margin |")
print("|---|---|---|---|---|---|")
for name, res in (("sequential", d), ("threshold", d), ("Kayenta-style Mann-Whitney", None)):
    get = (lambda sc: mw[sc]) if res is None else (lambda sc, n=name: res[sc][n])
    m, e, x = get("margin"), get("equal"), get("double")
    print(f"| {name} | {m['promoted']/m['runs']:.4f} | {e['rolled_back']/e['runs']:.4f} | "
          f"{x['rolled_back']/x['runs']:.4f} | {x['median_requests_to_rollback']} | {m['undecided']/m['runs']:.4f} |")
PY
