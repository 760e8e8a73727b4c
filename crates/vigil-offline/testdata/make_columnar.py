"""Writes the Parquet and Arrow IPC copies of reference.csv and current.csv that the engine tests
read (tests/formats.rs): the same values, typed as pandas types them (age and churned int64,
income float64 with a null, city and note strings), as a data scientist's files would be.

    python make_columnar.py   # with pandas and pyarrow (load-tests/evidently/requirements.txt)
"""
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

for side in ("reference", "current"):
    df = pd.read_csv(f"{side}.csv", skipinitialspace=True)
    df.to_parquet(f"{side}.parquet", index=False, compression="snappy")
    table = pa.Table.from_pandas(df, preserve_index=False)
    # Arrow IPC file (Feather v2) with lz4 buffers, and the stream format uncompressed, in
    # several batches.
    feather.write_feather(table, f"{side}.arrow", compression="lz4")
    with pa.OSFile(f"{side}.arrows", "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=64):
            writer.write_batch(batch)
