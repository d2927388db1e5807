"""Writes the binary request bodies of the protocol benchmark from run.sh's JSON ones.

Usage: protocols.py WORK_DIR
For N in 1 and 32, from body-N.json (one [N, F] FP32 tensor "input-0"):
  body-N.bin + body-N.len   REST binary tensor extension: JSON header, raw little-endian FP32
  grpc-N.bin                a serialized inference.ModelInferRequest with raw_input_contents
The tensors are the same for every server and protocol.
"""
import json
import os
import sys

import numpy as np
from tritonclient.grpc import service_pb2

work = sys.argv[1]
for n in (1, 32):
    with open(os.path.join(work, f"body-{n}.json")) as f:
        tensor = json.load(f)["inputs"][0]
    raw = np.array(tensor["data"], dtype="<f4").tobytes()
    header = json.dumps({"inputs": [{
        "name": tensor["name"], "shape": tensor["shape"], "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw)},
    }], "parameters": {"binary_data_output": True}}).encode()
    with open(os.path.join(work, f"body-{n}.bin"), "wb") as f:
        f.write(header + raw)
    with open(os.path.join(work, f"body-{n}.len"), "w") as f:
        f.write(str(len(header)))
    request = service_pb2.ModelInferRequest(model_name="wine-quality")
    request.inputs.add(name=tensor["name"], datatype="FP32", shape=tensor["shape"])
    request.raw_input_contents.append(raw)
    with open(os.path.join(work, f"grpc-{n}.bin"), "wb") as f:
        f.write(request.SerializeToString())
print("binary REST and gRPC bodies written")
