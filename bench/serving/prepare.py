"""Serving benchmark helper: trains the scikit-learn MLP for MLServer and writes request bodies.

Usage: prepare.py TRAIN_CSV TARGET WORK_DIR FEATURE[,FEATURE...]
The feature order is driftline's (read from its model metadata) so both servers get the same body.
"""
import csv
import json
import os
import sys

import joblib
import numpy as np
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

train_csv, target, work, features = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
with open(train_csv, newline="") as f:
    rows = list(csv.DictReader(f))
x = np.array([[float(r[c]) for c in features] for r in rows], dtype=np.float32)
y = np.array([r[target] for r in rows])

# Same size and schedule as the driftline Model: hidden [64, 32], relu, 64-row batches, seed 7.
model = make_pipeline(
    StandardScaler(),
    MLPClassifier(hidden_layer_sizes=(64, 32), activation="relu", batch_size=64,
                  learning_rate_init=0.003, max_iter=60, random_state=7),
)
model.fit(x, y)

server_dir = os.path.join(work, "mlserver")
model_dir = os.path.join(server_dir, "wine-quality")
os.makedirs(model_dir, exist_ok=True)
joblib.dump(model, os.path.join(model_dir, "model.joblib"))
with open(os.path.join(model_dir, "model-settings.json"), "w") as f:
    json.dump({"name": "wine-quality", "implementation": "mlserver_sklearn.SKLearnModel",
               "parameters": {"uri": "./model.joblib", "version": "1"}}, f)
with open(os.path.join(server_dir, "settings.json"), "w") as f:
    # One worker: inference in the server process, like driftline's single process.
    json.dump({"host": "127.0.0.1", "http_port": 18081, "grpc_port": 18082, "metrics_port": 18083,
               "parallel_workers": 0, "debug": False}, f)

for n in (1, 32):
    data = x[:n].tolist()
    body = {"inputs": [{"name": "input-0", "shape": [n, len(features)], "datatype": "FP32", "data": data}]}
    with open(os.path.join(work, f"body-{n}.json"), "w") as f:
        json.dump(body, f)
print(f"sklearn MLP trained on {len(rows)} rows; bodies written")
