"""The PyTorch side of bench/streaming: the same MLP, batch size, epochs and
learning rate as driftline's streamed run, trained from a DataLoader over
pyarrow record batches with a seeded shuffle buffer of the same size.

Like driftline it makes one statistics pass first (means and scales of the
numbers, the colour vocabulary), holds the newest day out for validation,
and streams the other days. Prints one JSON line: rows, seconds, rows/s
(training rows over the whole run, statistics pass included), accuracy.
Usage: python3 torch_stream.py DATA_DIR BATCH EPOCHS LR BUFFER HIDDEN THREADS
"""

import glob
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

data, batch, epochs, lr, buffer, hidden, threads = sys.argv[1:8]
batch, epochs, lr, buffer, threads = int(batch), int(epochs), float(lr), int(buffer), int(threads)
hidden = [int(h) for h in hidden.split(",")]
torch.set_num_threads(threads)
torch.manual_seed(7)
files = sorted(glob.glob(os.path.join(data, "date=*", "*.parquet")))
train_files, val_files = files[:-1], files[-1:]
numeric = [f"x{j}" for j in range(8)]
columns = numeric + ["color", "label"]
started = time.time()

# Statistics pass over the training days.
n, sums, sq, colors = 0, np.zeros(8), np.zeros(8), set()
for f in train_files:
    for b in pq.ParquetFile(f).iter_batches(batch_size=65_536, columns=columns):
        m = np.stack([b.column(c).to_numpy() for c in numeric], axis=1)
        n += len(m)
        sums += m.sum(0)
        sq += (m * m).sum(0)
        colors.update(pc.unique(b.column("color")).to_pylist())
mean = sums / n
std = np.sqrt(np.maximum(sq / n - mean * mean, 1e-24))
vocab = sorted(colors)
width = 8 + len(vocab) + 1


def encode(b):
    m = (np.stack([b.column(c).to_numpy() for c in numeric], axis=1) - mean) / std
    onehot = np.zeros((b.num_rows, len(vocab) + 1), dtype=np.float32)
    idx = pc.index_in(b.column("color"), value_set=pa.array(vocab))
    idx = pc.fill_null(idx, len(vocab)).to_numpy()
    onehot[np.arange(b.num_rows), idx] = 1.0
    x = np.concatenate([m.astype(np.float32), onehot], axis=1)
    y = (b.column("label").to_numpy(zero_copy_only=False) == "b").astype(np.int64)
    return x, y


class Stream(torch.utils.data.IterableDataset):
    """Mini-batches from the files in a seeded order through a shuffle
    buffer of BUFFER rows, vectorised: each incoming chunk joins the buffer,
    the union is permuted, the chunk's size in rows leaves, the rest stays."""

    def __init__(self, files, epoch):
        self.files, self.epoch = files, epoch

    def __iter__(self):
        rng = np.random.default_rng(7 + self.epoch)
        order = list(self.files)
        rng.shuffle(order)
        bx = np.zeros((0, width), dtype=np.float32)
        by = np.zeros(0, dtype=np.int64)
        qx, qy = [], []
        queued = 0
        for f in order:
            for b in pq.ParquetFile(f).iter_batches(batch_size=8_192, columns=columns):
                x, y = encode(b)
                bx, by = np.concatenate([bx, x]), np.concatenate([by, y])
                if len(by) <= buffer:
                    continue
                perm = rng.permutation(len(by))
                out = perm[: len(by) - buffer]
                keep = perm[len(by) - buffer :]
                qx.append(bx[out])
                qy.append(by[out])
                queued += len(out)
                bx, by = bx[keep], by[keep]
                if queued >= batch:
                    ax, ay = np.concatenate(qx), np.concatenate(qy)
                    full = len(ay) - len(ay) % batch
                    for i in range(0, full, batch):
                        yield torch.from_numpy(ax[i : i + batch]), torch.from_numpy(ay[i : i + batch])
                    qx, qy, queued = [ax[full:]], [ay[full:]], len(ay) - full
        perm = rng.permutation(len(by))
        ax = np.concatenate(qx + [bx[perm]])
        ay = np.concatenate(qy + [by[perm]])
        for i in range(0, len(ay), batch):
            yield torch.from_numpy(ax[i : i + batch]), torch.from_numpy(ay[i : i + batch])


layers, inputs = [], width
for h in hidden:
    layers += [torch.nn.Linear(inputs, h), torch.nn.ReLU()]
    inputs = h
layers.append(torch.nn.Linear(inputs, 2))
model = torch.nn.Sequential(*layers)
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
loss_fn = torch.nn.CrossEntropyLoss()
rows = 0
for epoch in range(epochs):
    loader = torch.utils.data.DataLoader(Stream(train_files, epoch), batch_size=None)
    for xb, yb in loader:
        opt.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        rows += len(yb)
seconds = time.time() - started
correct = total = 0
with torch.no_grad():
    for f in val_files:
        for b in pq.ParquetFile(f).iter_batches(batch_size=65_536, columns=columns):
            x, y = encode(b)
            pred = model(torch.from_numpy(x)).argmax(1).numpy()
            correct += int((pred == y).sum())
            total += len(y)
print(json.dumps({"rows": rows, "seconds": seconds, "rowsPerSecond": rows / seconds, "accuracy": correct / total}))
