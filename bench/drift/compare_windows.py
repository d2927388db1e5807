"""Drift verdicts on the same windows: driftline vs Evidently vs NannyML.

Reads WORK_DIR/train.csv (the 2 000 rows the model was trained on: every
tool's reference), WORK_DIR/windows.csv (500-row windows in order: 40 in
distribution, 10 covariate-shifted, 2 concept-drifted) and driftline's
verdicts (WORK_DIR/driftline_windows.json, written by the `drift_windows`
example), runs

- Evidently 0.7: `Report([DataDriftPreset()])`, defaults (normalised
  Wasserstein for numeric and Jensen-Shannon for categorical columns at 0.1,
  dataset drift when >= 50 % of columns drift), one report per window;
- NannyML 0.13: `UnivariateDriftCalculator` with its default methods and
  thresholds (Jensen-Shannon, threshold from the reference chunks), chunks of
  500 rows; a window counts as drifted when any column alerts (NannyML has
  no dataset-level rule);

and prints false-alarm rate over the in-distribution windows, detection
delay (windows after the shift starts until the first drifted window),
detection rate on the shifted windows, agreement of per-feature verdicts,
and time per window.

Usage: compare_windows.py WORK_DIR
"""
import json
import sys
import time
import warnings

import pandas as pd

warnings.filterwarnings("ignore")  # NannyML warns about few reference chunks on every column

from evidently import Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402
import nannyml as nml  # noqa: E402

work = sys.argv[1]
ours = json.load(open(f"{work}/driftline_windows.json"))
size = ours["windowRows"]
train = pd.read_csv(f"{work}/train.csv", float_precision="round_trip").drop(columns=["label"])
stream = pd.read_csv(f"{work}/windows.csv", float_precision="round_trip").drop(columns=["label"])
columns = list(train.columns)
kinds = [w["kind"] for w in ours["windows"]]
n = len(kinds)
assert len(stream) == n * size, (len(stream), n, size)

# Evidently: one report per window. The first report pays for imports and caches, so a
# warm-up report on the first window is left out of the timing.
Report([DataDriftPreset()]).run(current_data=stream.iloc[:size], reference_data=train)
evidently = []
started = time.perf_counter()
for w in range(n):
    window = stream.iloc[w * size:(w + 1) * size].reset_index(drop=True)
    snapshot = Report([DataDriftPreset()]).run(current_data=window, reference_data=train).dict()
    per_column, share = {}, 0.0
    for m in snapshot["metrics"]:
        config = m["config"]
        if config["type"].endswith("ValueDrift"):
            # Distance methods: a column drifts when its score reaches the threshold.
            per_column[config["column"]] = m["value"] >= config["threshold"]
        elif config["type"].endswith("DriftedColumnsCount"):
            share, drift_share = m["value"]["share"], config["drift_share"]
    evidently.append({"drifted": share >= drift_share, "features": per_column})
evidently_seconds = (time.perf_counter() - started) / n

# NannyML: fit on the reference, then every window as one 500-row chunk.
started = time.perf_counter()
calculator = nml.UnivariateDriftCalculator(column_names=columns, chunk_size=size)
calculator.fit(train)
result = calculator.calculate(stream).filter(period="analysis").to_df()
nannyml_seconds = (time.perf_counter() - started) / n
nannyml = []
for w in range(n):
    row = result.iloc[w]
    per_column = {c: bool(row[(c, "jensen_shannon", "alert")]) for c in columns}
    nannyml.append({"drifted": any(per_column.values()), "features": per_column})

driftline = [
    {"drifted": w["datasetDrifted"], "features": {f["name"]: f["drifted"] for f in w["features"]}}
    for w in ours["windows"]
]
driftline_seconds = sum(w["seconds"] for w in ours["windows"]) / n
tools = {"driftline": driftline, "evidently": evidently, "nannyml": nannyml}


def rate(verdicts, kind):
    picked = [v["drifted"] for v, k in zip(verdicts, kinds) if k == kind]
    return sum(picked) / len(picked), sum(picked), len(picked)


def delay(verdicts):
    shifted = [v["drifted"] for v, k in zip(verdicts, kinds) if k == "covariate"]
    return next((i for i, d in enumerate(shifted) if d), None)


def feature_false_alarms(verdicts):
    flags = [f for v, k in zip(verdicts, kinds) if k == "reference" for f in v["features"].values()]
    return sum(flags), len(flags)


def agreement(a, b):
    same = total = 0
    for va, vb in zip(tools[a], tools[b]):
        for c in columns:
            same += va["features"][c] == vb["features"][c]
            total += 1
    return same / total


print(f"{n} windows of {size} rows: {kinds.count('reference')} in distribution, "
      f"{kinds.count('covariate')} covariate shift, {kinds.count('concept')} concept drift")
print(f"{'measure':<48} {'driftline':>12} {'evidently':>12} {'nannyml':>12}")
row = lambda label, values: print(f"{label:<48} " + " ".join(f"{v:>12}" for v in values))
row("false alarms, in-distribution windows", [f"{rate(t, 'reference')[1]}/{rate(t, 'reference')[2]}" for t in tools.values()])
row("false-alarm rate", [f"{rate(t, 'reference')[0]:.3f}" for t in tools.values()])
row("feature-windows flagged in distribution", [f"{feature_false_alarms(t)[0]}/{feature_false_alarms(t)[1]}" for t in tools.values()])
row("detection delay on covariate shift (windows)", [str(delay(t)) for t in tools.values()])
row("covariate-shift windows flagged", [f"{rate(t, 'covariate')[1]}/{rate(t, 'covariate')[2]}" for t in tools.values()])
row("concept-drift windows flagged (inputs unchanged)", [f"{rate(t, 'concept')[1]}/{rate(t, 'concept')[2]}" for t in tools.values()])
row("time per window (ms)", [f"{s * 1000:.3f}" for s in (driftline_seconds, evidently_seconds, nannyml_seconds)])
row("speed vs Evidently", [f"{evidently_seconds / s:.0f}x" for s in (driftline_seconds, evidently_seconds, nannyml_seconds)])
print("per-feature verdict agreement: "
      f"driftline-evidently {agreement('driftline', 'evidently'):.3f}, "
      f"driftline-nannyml {agreement('driftline', 'nannyml'):.3f}, "
      f"evidently-nannyml {agreement('evidently', 'nannyml'):.3f}")
shifted = [w for w, k in enumerate(kinds) if k == "covariate"]
for name, t in tools.items():
    flagged = sorted({c for w in shifted for c, d in t[w]["features"].items() if d})
    print(f"{name} flags on covariate-shift windows: {', '.join(flagged)}")
