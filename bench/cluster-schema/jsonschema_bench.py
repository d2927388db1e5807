"""Validates the same objects with python-jsonschema (Draft 4, the dialect
Kubernetes structural schemas derive from); prints key=value lines."""
import json
import sys
import time

import jsonschema

data = json.load(open(sys.argv[1]))
validator = jsonschema.Draft4Validator(data["schema"])
objects = data["objects"]
start = time.perf_counter()
invalid = sum(1 for obj in objects if next(validator.iter_errors(obj), None) is not None)
elapsed = time.perf_counter() - start
print(f"objects={len(objects)}")
print(f"invalid={invalid}")
print(f"validate_us_per_object={elapsed / len(objects) * 1e6:.1f}")
