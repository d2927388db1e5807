"""Kayenta-style Mann-Whitney canary judgement on the canaries canary_sim wrote.

Kayenta's MannWhitneyClassifier compares the canary's metric series with the
baseline's per interval: a Mann-Whitney U test, the Hodges-Lehmann shift, and
an effect size (ratio of means) against a tolerance; a metric is "High" (the
canary fails) when the test rejects at the confidence level, the shift is
upwards and the effect size exceeds the tolerance. Spinnaker judges each
interval as data accumulates and fails the canary at the first failing
interval; it passes at the end of the lifetime. Here: one observation per poll
(that poll's error rate), judged at every poll from the 5th up to the end of
the pause (the lifetime), confidence 0.95, tolerance = margin / stable rate
(the same allowance the other methods get).

  python3 mannwhitney.py OUT_DIR   -> OUT_DIR/mannwhitney.json
"""
import csv
import json
import statistics
import sys
from collections import defaultdict

from scipy.stats import mannwhitneyu


def judge(polls, setup):
    lifetime = setup["pause_polls"]
    tolerance = setup["margin"] / setup["stable_error_rate"]
    canary, stable, requests = [], [], 0
    for i, (ce, cr, se, sr) in enumerate(polls[:lifetime], start=1):
        canary.append(ce / cr)
        stable.append(se / sr)
        requests += cr
        if i < 5:
            continue
        p = mannwhitneyu(canary, stable, alternative="two-sided").pvalue
        shift = statistics.median(c - s for c in canary for s in stable)
        mean_s = sum(stable) / len(stable)
        ratio = (sum(canary) / len(canary)) / mean_s if mean_s > 0 else float("inf")
        if p < 0.05 and shift > 0 and ratio > 1 + tolerance:
            return False, requests
    return True, requests


def main():
    out = sys.argv[1]
    setup = json.load(open(f"{out}/driftline.json"))["setup"]
    result = {}
    for scenario in ("equal", "margin", "double"):
        canaries = defaultdict(list)
        with open(f"{out}/{scenario}.csv") as f:
            for row in csv.DictReader(f):
                canaries[int(row["canary"])].append(
                    (int(row["canary_errors"]), int(row["canary_requests"]),
                     int(row["stable_errors"]), int(row["stable_requests"])))
        promoted, rollbacks = 0, []
        for c in sorted(canaries):
            ok, n = judge(canaries[c], setup)
            if ok:
                promoted += 1
            else:
                rollbacks.append(n)
        rollbacks.sort()
        result[scenario] = {
            "runs": len(canaries),
            "promoted": promoted,
            "rolled_back": len(rollbacks),
            "undecided": 0,
            "median_requests_to_rollback": rollbacks[len(rollbacks) // 2] if rollbacks else None,
        }
    json.dump(result, open(f"{out}/mannwhitney.json", "w"), indent=2)


if __name__ == "__main__":
    main()
