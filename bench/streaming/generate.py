"""Writes the synthetic streaming benchmark set (never committed): ROWS rows
of Hive-partitioned Parquet, one `date=YYYY-MM-DD` directory a day, seeded.

Columns: event_time (UTC timestamp), x0..x7 (float64), color (string, three
values), label (`a`/`b`: `x0 + x1 + shift(color) > 0`, one in twenty flipped).
Usage: python3 generate.py OUT_DIR [ROWS] [DAYS] [ROW_GROUP]
"""

import os
import sys
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000_000
days = int(sys.argv[3]) if len(sys.argv) > 3 else 20
group = int(sys.argv[4]) if len(sys.argv) > 4 else 131_072
per_day = rows // days
start = datetime(2026, 11, 1, tzinfo=timezone.utc)
for d in range(days):
    rng = np.random.default_rng(1000 + d)
    day = start + timedelta(days=d)
    t0 = int(day.timestamp() * 1000)
    times = t0 + (np.arange(per_day, dtype=np.int64) * 86_400_000) // per_day
    xs = [rng.uniform(-2.0, 2.0, per_day) for _ in range(8)]
    color_idx = rng.integers(0, 3, per_day)
    shift = np.array([1.0, 0.0, -1.0])[color_idx]
    positive = xs[0] + xs[1] + shift > 0
    flipped = rng.integers(0, 20, per_day) == 0
    label = np.where(positive != flipped, "a", "b")
    table = pa.table(
        {
            "event_time": pa.array(times, pa.timestamp("ms", tz="UTC")),
            **{f"x{j}": xs[j] for j in range(8)},
            "color": pa.array(np.array(["red", "green", "blue"])[color_idx]),
            "label": pa.array(label),
        }
    )
    path = os.path.join(out, f"date={day:%Y-%m-%d}")
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, ".part-0.parquet.tmp")
    pq.write_table(table, tmp, row_group_size=group)
    os.replace(tmp, os.path.join(path, "part-0.parquet"))
print(f"{per_day * days} rows in {days} daily partitions under {out}")
