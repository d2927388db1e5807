"""Image serving benchmark helper (bench/images/serve.sh).

    serve_prepare.py prepare ARTIFACT_DIR TEST_DIR WORK_DIR
        MLServer's settings and model folder (the DriftlineCnn runtime of
        torch_artifact.py over the driftline artifact), and the request
        bodies: one OIP BYTES input `image` of 1 and of 32 test PNG files
        (base64, as OIP's JSON carries bytes), the same body for both servers.
    serve_prepare.py verify TEST_DIR URL...
        Sends every test image, 32 a request, to each server's infer URL and
        checks they all give the same classes (exit 1 if not); prints the
        accuracy of each and the largest probability difference.
"""

import base64
import csv
import json
import os
import shutil
import sys
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def test_images(test_dir):
    with open(os.path.join(test_dir, "index.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    files = []
    for r in rows:
        with open(os.path.join(test_dir, r["path"]), "rb") as f:
            files.append(f.read())
    return files, [r["digit"] for r in rows]


def body(files):
    data = [base64.b64encode(f).decode() for f in files]
    return {"inputs": [{"name": "image", "shape": [len(data)], "datatype": "BYTES", "data": data}]}


def prepare(artifact, test_dir, work):
    server_dir = os.path.join(work, "mlserver")
    model_dir = os.path.join(server_dir, "digits")
    os.makedirs(model_dir, exist_ok=True)
    shutil.copy(os.path.join(HERE, "torch_artifact.py"), model_dir)
    with open(os.path.join(model_dir, "model-settings.json"), "w") as f:
        json.dump({"name": "digits", "implementation": "torch_artifact.DriftlineCnn",
                   "parameters": {"uri": os.path.abspath(artifact), "version": "1"}}, f)
    with open(os.path.join(server_dir, "settings.json"), "w") as f:
        # One worker: inference in the server process, as bench/serving runs it.
        json.dump({"host": "127.0.0.1", "http_port": 18181, "grpc_port": 18182, "metrics_port": 18183,
                   "parallel_workers": 0, "debug": False}, f)
    files, _ = test_images(test_dir)
    for n in (1, 32):
        with open(os.path.join(work, f"body-{n}.json"), "w") as f:
            json.dump(body(files[:n]), f)
    print(f"MLServer model folder and bodies written to {work}")


def infer(url, files):
    req = urllib.request.Request(url, data=json.dumps(body(files)).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        out = {o["name"]: o for o in json.load(r)["outputs"]}
    p = np.array(out["probabilities"]["data"], dtype=np.float64).reshape(out["probabilities"]["shape"])
    return [str(c) for c in out["predictions"]["data"]], p


def verify(test_dir, urls):
    files, labels = test_images(test_dir)
    answers = []
    for url in urls:
        classes, probs = [], []
        for i in range(0, len(files), 32):
            c, p = infer(url, files[i : i + 32])
            classes += c
            probs.append(p)
        answers.append((classes, np.concatenate(probs)))
    first_c, first_p = answers[0]
    ok = True
    for url, (c, p) in zip(urls, answers):
        acc = sum(a == b for a, b in zip(c, labels)) / len(labels)
        differ = sum(a != b for a, b in zip(c, first_c))
        print(f"{url}: accuracy {acc:.4f} on {len(labels)} test images; classes differing from the first "
              f"server: {differ}; largest probability difference {np.abs(p - first_p).max():.2e}")
        ok &= differ == 0
    if not ok:
        print("the servers do not give the same classes: not timing them", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"] and len(sys.argv) == 5:
        prepare(*sys.argv[2:5])
    elif sys.argv[1:2] == ["verify"] and len(sys.argv) >= 4:
        verify(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)
