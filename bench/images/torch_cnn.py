"""The same CNN as bench/images/model.yaml in PyTorch, on the same digits.

Same pixels (the arrays digits_images.py encodes into the PNG files driftline
reads; PyTorch gets them already decoded, so its figure leaves out the PNG
decoding driftline pays), the same layers (conv 3x3 same padding, batch
norm, ReLU, 2x2 max pooling per block; global average pooling; a 64-wide
hidden layer; 10 outputs), per-channel normalisation fitted on the training
rows, AdamW without weight decay, the same batch size, learning rate and
epochs, shuffled each epoch. Prints one JSON line.

    python3 torch_cnn.py --size 32 --train 1400 --test 397 --epochs 15 --threads 1
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures"))
from digits_images import upscale  # noqa: E402  (the same pixels as the PNG files)


def model(channels):
    layers, c_in = [], 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c_in, 64), nn.ReLU(), nn.Linear(64, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--train", type=int, default=1400)
    p.add_argument("--test", type=int, default=397)
    p.add_argument("--seed", type=int, default=7, help="the train/test split (as tests/fixtures/digits_images.py)")
    p.add_argument("--torch-seed", type=int, default=1, help="initial weights and batch order")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--validation", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bench/training/gpu/run.sh)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.torch_seed)
    digits = load_digits()
    order = np.random.default_rng(a.seed).permutation(len(digits.images))
    train, test = order[: a.train], order[a.train : a.train + a.test]
    # driftline holds out `validationFraction` of the training images; so does this.
    keep = train[: int(round(len(train) * (1 - a.validation)))]

    def pixels(idx):
        x = np.stack([upscale(digits.images[i], a.size) / 255.0 for i in idx]).astype(np.float32)
        return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(digits.target[idx]).long()

    started = time.perf_counter()
    x, y = pixels(keep)
    mean, std = x.mean(), x.std()
    x = (x - mean) / std
    dev = torch.device(a.device)
    x, y = x.to(dev), y.to(dev)
    net = model([16, 32]).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()
    epoch_seconds = []
    for _ in range(a.epochs):
        t = time.perf_counter()
        net.train()
        perm = torch.randperm(len(x), device=dev)
        for i in range(0, len(x), a.batch):
            b = perm[i : i + a.batch]
            opt.zero_grad()
            loss_fn(net(x[b]), y[b]).backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        epoch_seconds.append(time.perf_counter() - t)
    total = time.perf_counter() - started
    net.eval()
    xt, yt = pixels(test)
    xt, yt, mean, std = xt.to(dev), yt.to(dev), mean.to(dev), std.to(dev)
    with torch.no_grad():
        accuracy = (net((xt - mean) / std).argmax(1) == yt).float().mean().item()
    print(json.dumps({"seconds": total, "epoch_seconds": sorted(epoch_seconds)[len(epoch_seconds) // 2],
                      "epochs": a.epochs, "accuracy": accuracy, "threads": a.threads, "device": a.device,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
