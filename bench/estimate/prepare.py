"""Estimated-accuracy benchmark, data side: writes WORK_DIR/<dataset>/
train.csv (driftline trains on it), reference.csv (labelled rows neither
trains on; NannyML's CBPE fits its calibration on them) and windows.csv
(the analysis windows, a `window` column naming each).

- wine: the bundled wine-quality pipeline's data (6 classes). The test set's
  320 rows form each window, with one chemistry column shifted (alcohol up
  by 0.5 to 3, sulphates, volatile acidity and pH up or down).
- breast_cancer: scikit-learn's breast cancer set (binary), a foreign
  dataset. Windows of 200 rows are drawn (seed 11) from rows neither side
  trained on, weighted ever more towards the region where the classes
  overlap in `mean_radius`: a seeded covariate shift that makes the rows
  harder to call.
"""
import os
import sys

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer

work = sys.argv[1]
root = os.path.join(os.path.dirname(__file__), "..", "..")


def write(name, train, reference, windows):
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    train.to_csv(os.path.join(d, "train.csv"), index=False)
    reference.to_csv(os.path.join(d, "reference.csv"), index=False)
    windows.to_csv(os.path.join(d, "windows.csv"), index=False)


# Wine quality.
data = os.path.join(root, "pipelines", "data", "wine-quality")
pool = pd.read_csv(os.path.join(data, "train.csv")).sample(frac=1.0, random_state=0)
cut = int(len(pool) * 0.8)
test = pd.read_csv(os.path.join(data, "test.csv"))
shifts = [("none", None, 0.0)]
shifts += [(f"alcohol{d:+}", "alcohol", d) for d in (0.5, 1.0, 1.5, 2.0, 3.0)]
shifts += [(f"sulphates{d:+}", "sulphates", d) for d in (-0.2, 0.3)]
shifts += [(f"volatile_acidity{d:+}", "volatile_acidity", d) for d in (-0.3, 0.3)]
shifts += [(f"ph{d:+}", "ph", d) for d in (-0.3, 0.3)]
windows = []
for label, column, delta in shifts:
    w = test.copy()
    if column:
        w[column] = w[column] + delta
    w.insert(0, "window", label)
    windows.append(w)
write("wine", pool.iloc[:cut], pool.iloc[cut:], pd.concat(windows))

# Breast cancer.
bc = load_breast_cancer(as_frame=True).frame
bc.columns = [c.replace(" ", "_") for c in bc.columns]
bc = bc.sample(frac=1.0, random_state=1).reset_index(drop=True)
train, reference, rest = bc.iloc[:280], bc.iloc[280:370], bc.iloc[370:].reset_index(drop=True)
radius = rest["mean_radius"]
# Where the two classes meet: halfway between their mean radii.
middle = (bc.loc[bc.target == 0, "mean_radius"].mean() + bc.loc[bc.target == 1, "mean_radius"].mean()) / 2
z = (radius - middle) / radius.std()
rng = np.random.default_rng(11)
windows = []
for strength in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
    for repeat in range(2):
        weight = np.exp(-strength * z.to_numpy() ** 2)
        rows = rng.choice(len(rest), size=200, replace=True, p=weight / weight.sum())
        w = rest.iloc[rows].copy()
        w.insert(0, "window", f"overlap{strength}-{repeat}")
        windows.append(w)
write("breast_cancer", train, reference, pd.concat(windows))
print(f"wrote {work}/wine and {work}/breast_cancer")
