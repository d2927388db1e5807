"""MLflow's side of the registry benchmark (bench/registry/run.sh).

Logs the same records as registry_bench.rs — 1 000 versions of one model, each
with its lineage (params), gate metrics and a 20-epoch training curve (one
log_batch per run), and a champion change (a registered model version, its
change recorded as version tags, and the `champion` alias moved) — to an MLflow
tracking server, then times the history of the model: search_runs over its
1 000 runs with params and latest metrics.

    python mlflow_bench.py http://127.0.0.1:PORT     # prints one JSON line
"""

import json
import os
import sys
import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

# BENCH_VERSIONS only for a quick smoke run; the figures use 1 000.
VERSIONS = int(os.environ.get("BENCH_VERSIONS", "1000"))
EPOCHS = 20
HISTORY_REPEATS = 30
T0_MS = 1_790_000_000_000


def records(n):
    """Params, metrics and tags of version n: the same values as the Rust side."""
    accuracy = 0.80 + (n % 17) / 100.0
    passed = accuracy >= 0.85
    ts = T0_MS + n * 3_600_000
    params = [
        Param("version", str(n)),
        Param("trigger", "Drift"),
        Param("reason", f"drifted share 0.6 over 0.5 for 3 windows (v{n})"),
        Param("seed", "7"),
        Param("config_hash", "cfg-1a2b3c"),
        Param("dataset_digest", f"sha256:{n:064x}"),
        Param("artifact_uri", f"s3://models/mlflow-bench/v{n}/"),
        Param("feedback_rows", str(n * 10)),
        Param("code_version", "0.1.0"),
    ]
    metrics = [
        Metric("accuracy", accuracy, ts, 0),
        Metric("macroF1", accuracy - 0.1, ts, 0),
        Metric("logLoss", 1.0 - accuracy, ts, 0),
    ]
    for epoch in range(1, EPOCHS + 1):
        metrics += [
            Metric("train_loss", 1.0 / epoch, ts, epoch),
            Metric("validation_loss", 1.1 / epoch, ts, epoch),
            Metric("validation_accuracy", accuracy * epoch / EPOCHS, ts, epoch),
        ]
    tags = [
        RunTag("gate.passed", str(passed).lower()),
        RunTag("gate.summary", "passed 3/3" if passed else "failed 1/3"),
        RunTag("gate.report", json.dumps({"verdict": {"passed": passed}})),
    ]
    change = {
        "action": "Promote",
        "from": str(n - 1) if n > 1 else "",
        "to": str(n),
        "trigger": "CanaryPassed",
        "reason": f"v{n} passed 3/3 canary steps",
        "at": str(ts + 1_800_000),
    }
    return params, metrics, tags, change


def main():
    uri = sys.argv[1]
    client = MlflowClient(tracking_uri=uri)
    run_name = str(time.time_ns())
    experiment = client.create_experiment(f"bench-{run_name}")
    model = f"wine-quality-{run_name}"
    client.create_registered_model(model)

    started = time.perf_counter()
    calls = 0
    for n in range(1, VERSIONS + 1):
        params, metrics, tags, change = records(n)
        run = client.create_run(experiment, run_name=f"v{n}")
        client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        version = client.create_model_version(
            model, source=f"s3://models/mlflow-bench/v{n}/", run_id=run.info.run_id,
            tags={f"champion.{k}": v for k, v in change.items()},
            # Skips the client's extra status poll: in MLflow's favour.
            await_creation_for=0,
        )
        client.set_registered_model_alias(model, "champion", version.version)
        calls += 4
    write_s = time.perf_counter() - started
    # The same logical records as driftline's: version, evaluation, 20 epochs, champion change.
    total = VERSIONS * (2 + EPOCHS + 1)

    times = []
    for _ in range(HISTORY_REPEATS):
        t = time.perf_counter()
        runs = client.search_runs([experiment], max_results=VERSIONS)
        times.append(time.perf_counter() - t)
        assert len(runs) == VERSIONS, len(runs)
        assert all("accuracy" in r.data.metrics for r in runs)
    times.sort()

    def pct(p):
        return times[round((len(times) - 1) * p)] * 1e3

    # MLflow keeps only the alias's current target: the audit trail of champion
    # changes has to be rebuilt from version tags, one search over all versions.
    versions = client.search_model_versions(f"name='{model}'", max_results=VERSIONS)
    print(json.dumps({
        "tool": "mlflow",
        "backend": "mlflow server, sqlite backend store",
        "versions": VERSIONS,
        "records": total,
        "http_calls": calls,
        "records_per_s": total / write_s,
        "write_s": write_s,
        "history_1000_ms_p50": pct(0.5),
        "history_1000_ms_p95": pct(0.95),
        "history_repeats": HISTORY_REPEATS,
        "model_versions_found": len(versions),
        "champion_alias_now": client.get_registered_model(model).aliases.get("champion"),
    }))


if __name__ == "__main__":
    main()
