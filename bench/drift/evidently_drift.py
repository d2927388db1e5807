"""Drift benchmark, Evidently side.

Times Evidently's data-drift report (DataDriftPreset, default methods) on the
same 100 000 x 20 rows driftline sketched, then checks that Evidently's own
Jensen-Shannon, PSI and normalised Wasserstein functions give driftline's
values when both see the same bins (each value replaced by its driftline bin).

Usage: evidently_drift.py WORK_DIR   (after drift_bench wrote WORK_DIR/*.csv and driftline.json)
"""
import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
from evidently.legacy.calculations.stattests.psi import _psi
from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
from evidently.legacy.core import ColumnType

work = sys.argv[1]
# round_trip: parse exactly the floats driftline wrote, so values on a bin edge stay on it.
reference = pd.read_csv(f"{work}/reference.csv", float_precision="round_trip")
current = pd.read_csv(f"{work}/current.csv", float_precision="round_trip")
ours = json.load(open(f"{work}/driftline.json"))

started = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
snapshot.dict()
report_seconds = time.perf_counter() - started


def bins(values, edges):
    """driftline's sketch bin: 0 below e0, i for [e(i-1), e(i)), last inner bin includes ek, k+1 above."""
    edges = np.asarray(edges)
    k = len(edges) - 1
    b = np.searchsorted(edges, values, side="right")
    b = np.where(values == edges[-1], k, b)
    return np.where(values > edges[-1], k + 1, b)


def centres(edges):
    e = np.asarray(edges)
    inner = (e[:-1] + e[1:]) / 2
    return np.concatenate([[e[0] - (e[1] - e[0]) / 2], inner, [e[-1] + (e[-1] - e[-2]) / 2]])


worst = {"jensenShannon": 0.0, "psi": 0.0, "wasserstein": 0.0}
for j, column in enumerate(reference.columns):
    edges = ours["edges"][j]
    ref_bins, cur_bins = bins(reference[column].values, edges), bins(current[column].values, edges)
    # Bin indices as categories: Evidently counts shares per bin, as driftline's sketch does.
    js, _ = _jensenshannon(pd.Series(ref_bins), pd.Series(cur_bins), ColumnType.Categorical, 0.1, base=2)
    psi, _ = _psi(pd.Series(ref_bins), pd.Series(cur_bins), ColumnType.Categorical, 0.1)
    # Values moved to their bin centres; Evidently normalises by the std it sees, driftline by the raw std.
    c = centres(edges)
    w, _ = _wasserstein_distance_norm(pd.Series(c[ref_bins]), pd.Series(c[cur_bins]), ColumnType.Numerical, 0.1)
    w = w * max(float(np.std(c[ref_bins])), 0.001) / float(np.std(reference[column].values))
    d = ours["drift"][j]
    worst["jensenShannon"] = max(worst["jensenShannon"], abs(js - d["jensenShannon"]))
    worst["psi"] = max(worst["psi"], abs(psi - d["psi"]))
    worst["wasserstein"] = max(worst["wasserstein"], abs(w - d["wasserstein"]))

ours_total = ours["updateSeconds"] + ours["statisticsSeconds"]
print(f"{'step':<40} {'driftline':>12} {'evidently':>12} {'ratio':>9}")
print(f"{'sketch 100000 x 20 rows (s)':<40} {ours['updateSeconds']:12.4f} {'':>12} {'':>9}")
print(f"{'all statistics, 20 features (s)':<40} {ours['statisticsSeconds']:12.6f} {'':>12} {'':>9}")
print(f"{'update + statistics vs report (s)':<40} {ours_total:12.4f} {report_seconds:12.4f} {report_seconds / ours_total:8.1f}x")
# Evidently also reads the reference rows each time; driftline fits the reference profile once, at training.
ours_with_fit = ours_total + ours["fitSeconds"]
print(f"{'same, plus fitting the reference (s)':<40} {ours_with_fit:12.4f} {report_seconds:12.4f} {report_seconds / ours_with_fit:8.1f}x")
print(f"{'rows/s (sketch update)':<40} {ours['rowsPerSecond']:12.0f} {len(current) / report_seconds:12.0f} {ours['rowsPerSecond'] * report_seconds / len(current):8.1f}x")
print("largest difference on the same bins: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
