"""A driftline CNN artifact as a PyTorch module, and the MLServer runtime serving it.

The module has the same layers as `ml::arch::cnn` (conv with same padding and
no bias under batch norm, batch norm in eval mode with PyTorch's epsilon, the
activation, 2x2 pooling per block; global average pooling; the linear head)
and loads driftline's own weights from the artifact's `weights.safetensors`
(tensor names and shapes are PyTorch's, so nothing is transposed). The
preprocessing is the manifest's: decode (Pillow), resize to the model's size
if needed, BT.601 luma for grayscale or the channel order for RGB, values in
[0, 1], then (v - mean) / std per channel. So both servers answer with the
same model; serve.sh checks that they give the same classes before timing.

MLServer loads `DriftlineCnn` from the model folder (model-settings.json's
`implementation: torch_artifact.DriftlineCnn`, `parameters.uri`: the artifact
directory); inference runs in the server process (parallel_workers 0), on
TORCH_THREADS intra-op threads (1 by default, its fastest here).
"""

import base64
import io
import json
import os
import struct

import numpy as np
import torch
from torch import nn

BN_EPS = 1e-5
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "silu": nn.SiLU}


def read_safetensors(path):
    """Named float32 arrays of a safetensors file (the format is 8 bytes of
    header length, a JSON header, then the raw little-endian tensors)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"tensor {name}: dtype {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"]).copy()
    return out


def network(manifest, weights):
    """The artifact's CNN as an eval-mode nn.Sequential with its weights loaded."""
    arch = manifest["architecture"]
    if arch["type"] != "cnn":
        raise ValueError(f"architecture {arch['type']}: only cnn is supported here")
    act = ACTIVATIONS[arch.get("activation", "relu")]
    image = manifest["image"]
    c_in = 3 if image["channels"] == "rgb" else 1
    layers, state = [], {}
    for i, block in enumerate(arch["convBlocks"]):
        c, k, bn = block["channels"], block["kernel"], block["batchNorm"]
        conv = nn.Conv2d(c_in, c, k, stride=max(block["stride"], 1), padding=k // 2, bias=not bn)
        idx = len(layers)
        layers.append(conv)
        state[f"{idx}.weight"] = weights[f"conv{i}.weight"]
        if bn:
            layers.append(nn.BatchNorm2d(c, eps=BN_EPS))
            for ours, theirs in (("weight", "weight"), ("bias", "bias"), ("running_mean", "running_mean"),
                                 ("running_var", "running_var")):
                state[f"{idx + 1}.{theirs}"] = weights[f"conv{i}.bn.{ours}"]
        else:
            state[f"{idx}.bias"] = weights[f"conv{i}.bias"]
        layers.append(act())
        if block["pool"] == "max":
            layers.append(nn.MaxPool2d(2))
        elif block["pool"] == "avg":
            layers.append(nn.AvgPool2d(2))
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    hidden = arch.get("hiddenLayers", [])
    for j in range(len(hidden) + 1):
        w = weights[f"head{j}.weight"]
        linear = nn.Linear(w.shape[1], w.shape[0])
        state[f"{len(layers)}.weight"] = w
        state[f"{len(layers)}.bias"] = weights[f"head{j}.bias"]
        layers.append(linear)
        if j < len(hidden):
            layers.append(act())
    net = nn.Sequential(*layers)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    # BatchNorm2d's num_batches_tracked is not in driftline's artifact and
    # plays no part in eval mode.
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the layers: missing {missing}, unexpected {unexpected}")
    return net.eval()


class Artifact:
    """A driftline image artifact: preprocessing, network and classes."""

    def __init__(self, directory):
        with open(os.path.join(directory, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.image = self.manifest["image"]
        self.classes = self.manifest["classes"]
        # driftline's probabilities are the logits over the temperature its
        # calibration fitted on the validation split (1 when it did not).
        self.temperature = float((self.manifest.get("calibration") or {}).get("temperature", 1.0))
        self.net = network(self.manifest, read_safetensors(os.path.join(directory, "weights.safetensors")))
        self.mean = np.array(self.image["mean"], dtype=np.float32)[:, None, None]
        self.std = np.array(self.image["std"], dtype=np.float32)[:, None, None]

    def pixels(self, encoded):
        """One PNG or JPEG file to the model's normalised [C, H, W] input."""
        from PIL import Image

        img = Image.open(io.BytesIO(encoded)).convert("RGB")
        h, w = self.image["height"], self.image["width"]
        if img.size != (w, h):
            if self.image.get("resize"):
                raise ValueError("resize + centre crop is not reproduced here")
            img = img.resize((w, h), Image.BILINEAR)
        rgb = np.asarray(img, dtype=np.float32)
        if self.image["channels"] == "grayscale":
            planes = ((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0)[None]
        else:
            order = [0, 1, 2] if self.image["channelOrder"] == "rgb" else [2, 1, 0]
            planes = rgb[..., order].transpose(2, 0, 1) / 255.0
        return (planes - self.mean) / self.std

    def predict(self, files):
        """Class labels and probabilities of encoded images."""
        x = torch.from_numpy(np.stack([self.pixels(f) for f in files]).astype(np.float32))
        with torch.inference_mode():
            p = torch.softmax(self.net(x) / self.temperature, dim=1).numpy()
        return [self.classes[i] for i in p.argmax(1)], p


def _file(element):
    """An element of a BYTES input as the image file: raw (gRPC) or base64 (JSON)."""
    if isinstance(element, str):
        return base64.b64decode(element)
    if element[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1") or element[:3] == b"\xff\xd8\xff":
        return bytes(element)
    return base64.b64decode(element)


try:
    from mlserver import MLModel
    from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
except ImportError:  # the artifact loader alone needs no MLServer
    MLModel = object


class DriftlineCnn(MLModel):
    """MLServer runtime: one BYTES input of PNG/JPEG files in, `predictions`
    (BYTES class labels) and `probabilities` (FP32 [N, classes]) out, as
    driftline answers."""

    async def load(self) -> bool:
        # One intra-op thread (TORCH_THREADS to change it): on the shared
        # 2-core machine, 2 threads made a 1-image request 12 ms instead of
        # 1.2 ms (OpenMP threads spinning against each other and the load).
        torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
        uri = self.settings.parameters.uri
        self.artifact = Artifact(uri)
        return True

    async def predict(self, payload: "InferenceRequest") -> "InferenceResponse":
        if len(payload.inputs) != 1 or payload.inputs[0].datatype != "BYTES":
            raise ValueError("send one BYTES input of PNG or JPEG files")
        data = payload.inputs[0].data
        elements = data.root if hasattr(data, "root") else data
        labels, p = self.artifact.predict([_file(e) for e in elements])
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                ResponseOutput(name="predictions", shape=[len(labels)], datatype="BYTES", data=labels),
                ResponseOutput(name="probabilities", shape=list(p.shape), datatype="FP32",
                               data=p.reshape(-1).tolist()),
            ],
        )
