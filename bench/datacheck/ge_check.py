"""Great Expectations computing the statistics `driftline datacheck`
judges, on the same Parquet files: row count, each column's null rate,
each numeric feature's share outside the champion's training range, the
target's class set and shares, and duplicate rows. Prints the seconds to
read and to validate, and the results driftline's report is checked
against.

    python ge_check.py DATA_DIR CHAMPION_RANGES_JSON
"""
import glob
import json
import sys
import time
import warnings

import pandas as pd
import pyarrow.parquet as pq

warnings.filterwarnings("ignore")
import great_expectations as gx  # noqa: E402


def main():
    data_dir, ranges_path = sys.argv[1], sys.argv[2]
    ranges = json.load(open(ranges_path))
    started = time.perf_counter()
    files = sorted(glob.glob(f"{data_dir}/date=*/*.parquet"))
    df = pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)
    read_s = time.perf_counter() - started

    started = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset("window")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="datacheck"))
    suite.add_expectation(gx.expectations.ExpectTableRowCountToBeBetween(min_value=10))
    for column in df.columns:
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToNotBeNull(column=column, mostly=0.9)
        )
    for column, (lo, hi) in ranges.items():
        suite.add_expectation(
            gx.expectations.ExpectColumnValuesToBeBetween(
                column=column, min_value=lo, max_value=hi, mostly=0.95
            )
        )
    suite.add_expectation(
        gx.expectations.ExpectColumnDistinctValuesToEqualSet(column="good", value_set=["no", "yes"])
    )
    suite.add_expectation(
        gx.expectations.ExpectColumnProportionOfUniqueValuesToBeBetween(column="good", min_value=0)
    )
    suite.add_expectation(
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=list(df.columns), mostly=0.5)
    )
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="check", data=batch_def, suite=suite)
    )
    result = definition.run(batch_parameters={"dataframe": df}, result_format="SUMMARY")
    validate_s = time.perf_counter() - started

    rows = len(df)
    nulls = {}
    out_of_range = {}
    duplicates = None
    for r in result.results:
        kind = r.expectation_config.type
        column = r.expectation_config.kwargs.get("column")
        res = r.result
        if kind == "expect_column_values_to_not_be_null":
            nulls[column] = res.get("unexpected_count")
        elif kind == "expect_column_values_to_be_between":
            out_of_range[column] = res.get("unexpected_count")
        elif kind == "expect_compound_columns_to_be_unique":
            duplicates = res.get("unexpected_count")
    print(json.dumps({
        "rows": rows,
        "readSeconds": round(read_s, 3),
        "validateSeconds": round(validate_s, 3),
        "seconds": round(read_s + validate_s, 3),
        "nulls": nulls,
        "outOfRange": out_of_range,
        "duplicateRowsInvolved": duplicates,
    }))


if __name__ == "__main__":
    main()
