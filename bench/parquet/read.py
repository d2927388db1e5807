"""pyarrow and polars reading the same Hive-partitioned window into the same
numeric matrix (features as float32, a string column as category codes in
first-seen order). Prints JSON with seconds and the matrix's sum.

    python read.py DIR FEATURE...
"""
import glob
import json
import sys
import time

import numpy as np


def codes(values):
    seen = {}
    return np.array([seen.setdefault(v, len(seen)) for v in values], dtype=np.float32)


def main():
    directory, features = sys.argv[1], sys.argv[2:]
    files = sorted(glob.glob(f"{directory}/date=*/*.parquet"))
    out = {}

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    started = time.perf_counter()
    table = pa.concat_tables(pq.read_table(f, columns=features) for f in files)
    cols = []
    for f in features:
        col = table.column(f)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            enc = pc.dictionary_encode(col).combine_chunks()
            cols.append(enc.indices.to_numpy().astype(np.float32))
        else:
            cols.append(col.to_numpy().astype(np.float32))
    matrix = np.stack(cols, axis=1)
    out["pyarrowSeconds"] = round(time.perf_counter() - started, 3)
    out["rows"] = matrix.shape[0]
    out["pyarrowSum"] = float(np.nansum(matrix, dtype=np.float64))
    del table, cols, matrix

    import polars as pl

    started = time.perf_counter()
    df = pl.read_parquet(f"{directory}/date=*/*.parquet", columns=features, hive_partitioning=False)
    # Codes in first-seen row order, as the others number categories
    # (polars' own categorical codes follow its parallel reader's order).
    exprs = []
    for f in features:
        if df.schema[f] == pl.String:
            seen = df[f].unique(maintain_order=True).to_list()
            mapping = {v: float(i) for i, v in enumerate(seen)}
            exprs.append(pl.col(f).replace_strict(mapping, return_dtype=pl.Float32))
        else:
            exprs.append(pl.col(f).cast(pl.Float32))
    matrix = df.select(exprs).to_numpy()
    out["polarsSeconds"] = round(time.perf_counter() - started, 3)
    out["polarsSum"] = float(np.nansum(matrix, dtype=np.float64))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
