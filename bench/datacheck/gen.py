"""A seeded wine-like table as daily Parquet partitions: 11 numeric features,
a class target, 0.5 % nulls per feature, 1 % repeated rows.

    python gen.py OUT ROWS DAYS SEED
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = [
    "fixed_acidity", "volatile_acidity", "citric_acid", "residual_sugar",
    "chlorides", "free_sulfur_dioxide", "total_sulfur_dioxide", "density",
    "ph", "sulphates", "alcohol",
]


def day(rng, rows, date):
    cols = {}
    for i, name in enumerate(FEATURES):
        x = rng.normal(5.0 + i, 1.0 + 0.1 * i, rows)
        x[rng.random(rows) < 0.005] = np.nan
        cols[name] = x
    alcohol = np.nan_to_num(cols["alcohol"], nan=15.0)
    good = np.where(alcohol + rng.normal(0, 0.5, rows) > 16.0, "yes", "no")
    table = {name: pa.array(v, from_pandas=True) for name, v in cols.items()}
    table["good"] = pa.array(good)
    t = pa.table(table)
    # 1 % of rows repeat an earlier row of the day.
    repeat = rng.integers(0, rows, rows // 100)
    idx = np.arange(rows)
    idx[rng.choice(rows, rows // 100, replace=False)] = repeat
    return t.take(pa.array(idx))


def main():
    out, rows, days, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(seed)
    per_day = rows // days
    for d in range(days):
        date = f"2026-11-{d + 1:02d}"
        path = os.path.join(out, f"date={date}")
        os.makedirs(path, exist_ok=True)
        pq.write_table(day(rng, per_day, date), os.path.join(path, "part-0.parquet"))


if __name__ == "__main__":
    main()
