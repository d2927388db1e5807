"""Trains the same MLP as driftline with PyTorch (CPU) or scikit-learn on the
same CSV split and prints one JSON line: training seconds and test metrics.

Preprocessing mirrors driftline's: numeric columns standardised with the
training mean/std, text columns one-hot with an unknown slot, labels sorted.
"""
import argparse
import csv
import json
import math
import time

import numpy as np


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def encode(header, train_rows, test_rows, target):
    t = header.index(target)
    cols = [i for i in range(len(header)) if i != t]
    parts_train, parts_test = [], []
    for c in cols:
        tr = [r[c] for r in train_rows]
        te = [r[c] for r in test_rows]
        if all(is_number(v) for v in tr):
            a = np.array(tr, dtype=np.float64)
            b = np.array(te, dtype=np.float64)
            mean, std = a.mean(), a.std() or 1.0
            parts_train.append(((a - mean) / std)[:, None])
            parts_test.append(((b - mean) / std)[:, None])
        else:
            cats = sorted(set(tr))
            idx = {v: i for i, v in enumerate(cats)}
            def onehot(vals):
                m = np.zeros((len(vals), len(cats) + 1))
                for i, v in enumerate(vals):
                    m[i, idx.get(v, len(cats))] = 1.0
                return m
            parts_train.append(onehot(tr))
            parts_test.append(onehot(te))
    return (np.hstack(parts_train).astype(np.float32), np.hstack(parts_test).astype(np.float32),
            [r[t] for r in train_rows], [r[t] for r in test_rows])


def class_metrics(truth, pred):
    acc = float(np.mean(np.array(truth) == np.array(pred)))
    return {"accuracy": acc}


def reg_metrics(truth, pred):
    truth, pred = np.asarray(truth, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    sse = float(((truth - pred) ** 2).sum())
    sst = float(((truth - truth.mean()) ** 2).sum())
    return {"rmse": math.sqrt(sse / len(truth)), "r2": 1 - sse / sst}


def sort_labels(labels):
    try:
        return sorted(set(labels), key=float)
    except ValueError:
        return sorted(set(labels))


def run_torch(args, xtr, xte, ytr, yte):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    widths = [xtr.shape[1]] + args.hidden
    classes = sort_labels(ytr) if args.task == "classification" else None
    out = len(classes) if classes else 1
    layers = []
    for a, b in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(widths[-1], out))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    x = torch.from_numpy(xtr)
    if classes:
        idx = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([idx[v] for v in ytr])
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        yv = np.array(ytr, dtype=np.float32)
        mean, std = yv.mean(), yv.std()
        y = torch.from_numpy((yv - mean) / std)[:, None]
        loss_fn = torch.nn.MSELoss()
    start = time.perf_counter()
    n = x.shape[0]
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        for i in range(0, n, args.batch):
            b = perm[i:i + args.batch]
            opt.zero_grad()
            loss = loss_fn(model(x[b]), y[b])
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        o = model(torch.from_numpy(xte))
    if classes:
        pred = [classes[i] for i in o.argmax(1).tolist()]
        return seconds, class_metrics(yte, pred)
    pred = (o[:, 0].numpy() * std + mean).tolist()
    return seconds, reg_metrics(yte, pred)


def run_sklearn(args, xtr, xte, ytr, yte):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    common = dict(hidden_layer_sizes=tuple(args.hidden), activation="relu", solver="adam",
                  learning_rate_init=args.lr, batch_size=args.batch, max_iter=args.epochs,
                  alpha=0.0, tol=0.0, n_iter_no_change=args.epochs + 1, random_state=args.seed,
                  shuffle=True)
    start = time.perf_counter()
    if args.task == "classification":
        m = MLPClassifier(**common).fit(xtr, ytr)
        seconds = time.perf_counter() - start
        return seconds, class_metrics(yte, list(m.predict(xte)))
    yv = np.array(ytr, dtype=np.float64)
    mean, std = yv.mean(), yv.std()
    m = MLPRegressor(**common).fit(xtr, (yv - mean) / std)
    seconds = time.perf_counter() - start
    return seconds, reg_metrics(yte, m.predict(xte) * std + mean)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tool", choices=["torch", "sklearn"], required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--task", choices=["classification", "regression"], required=True)
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",") if v], default=[64, 32])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    header, train_rows = read(args.train)
    _, test_rows = read(args.test)
    xtr, xte, ytr, yte = encode(header, train_rows, test_rows, args.target)
    run = run_torch if args.tool == "torch" else run_sklearn
    seconds, metrics = run(args, xtr, xte, ytr, yte)
    print(json.dumps({"tool": args.tool, "trainSeconds": seconds, "metrics": metrics}))


if __name__ == "__main__":
    main()
