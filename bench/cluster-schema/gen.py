"""Writes the benchmark input: the Model CRD's structural schema and N objects
(half of them invalid, in five different ways), as one JSON document."""
import json
import random
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
rng = random.Random(7)

schema = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["task", "data"],
            "x-kubernetes-validations": [{
                "rule": "self.task != 'regression' || !has(self.gate) || self.gate.metrics.all(m, m.name != 'accuracy')",
                "message": "accuracy is not a regression metric", "fieldPath": ".gate.metrics"}],
            "properties": {
                "task": {"type": "string", "enum": ["classification", "regression"]},
                "data": {"type": "object", "required": ["source"], "properties": {
                    "source": {"type": "string", "pattern": "^(file|s3|https)://"},
                    "target": {"type": "string", "default": "label"}}},
                "architecture": {"type": "object", "properties": {
                    "type": {"type": "string", "enum": ["mlp", "linear"]},
                    "hiddenLayers": {"type": "array", "maxItems": 8, "items": {"type": "integer", "minimum": 1, "maximum": 4096}},
                    "dropout": {"type": "number", "minimum": 0, "maximum": 1}}},
                "training": {"type": "object", "default": {}, "properties": {
                    "epochs": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 20},
                    "batchSize": {"type": "integer", "minimum": 1, "default": 32},
                    "learningRate": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "default": 0.001},
                    "seed": {"type": "integer", "format": "int64"}}},
                "gate": {"type": "object", "properties": {
                    "metrics": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "required": ["name"], "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 63},
                            "min": {"type": "number", "minimum": 0, "maximum": 1},
                            "maxDropFromChampion": {"type": "number", "minimum": 0}}}}}},
                "rollout": {"type": "object", "properties": {
                    "steps": {"type": "array", "maxItems": 10, "items": {"type": "object",
                        "x-kubernetes-validations": [{"rule": "self.weight <= 100", "message": "weight must be at most 100"}],
                        "properties": {"weight": {"type": "integer", "minimum": 1},
                                       "pause": {"type": "string", "pattern": "^[0-9]+[smh]$", "default": "5m"}}}}}},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def model(i):
    obj = {
        "apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": f"model-{i}", "namespace": "ml"},
        "spec": {
            "task": rng.choice(["classification", "regression"]),
            "data": {"source": f"s3://datasets/d{i}.csv"},
            "architecture": {"type": "mlp", "hiddenLayers": [64, 32], "dropout": 0.1},
            "training": {"epochs": rng.randint(1, 100), "learningRate": 0.001, "seed": i},
            "gate": {"metrics": [{"name": "f1", "min": 0.8}, {"name": "rmse", "min": 0.1}]},
            "rollout": {"steps": [{"weight": 5, "pause": "10m"}, {"weight": 25}, {"weight": 50, "pause": "20m"}]},
        },
    }
    broken = i % 10
    if broken == 1:
        obj["spec"]["training"]["epochs"] = 0
    elif broken == 3:
        obj["spec"]["task"] = "ranking"
    elif broken == 5:
        obj["spec"]["data"]["source"] = "ftp://nowhere"
    elif broken == 7:
        del obj["spec"]["data"]
    elif broken == 9:
        obj["spec"]["architecture"]["dropout"] = 1.5
    return obj


json.dump({"schema": schema, "objects": [model(i) for i in range(n)]}, sys.stdout)
