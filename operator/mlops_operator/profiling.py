"""Computes a reference profile (format in ``logic.profile``) from a CSV or Parquet dataset, column by column.

Memory stays bounded by one column: Parquet is read a column at a time; a CSV is first streamed into a temporary
Arrow file (parsed once, in blocks), which is then memory-mapped and read a column at a time. Blocking: run it in a
thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_operator.logic.profile import FORMAT, categorical_feature, numeric_feature
from mlops_operator.outbound import Policy
from mlops_operator.storage import opened, redact


class ProfileError(Exception):
    """The dataset cannot be profiled as asked (unknown format, missing column, unreadable). The message carries
    nothing read from the dataset but what a profile publishes anyway (column names asked for, counts)."""


def infer_format(uri: str) -> str:
    path = uri.lower().split("?", 1)[0]
    if path.endswith((".parquet", ".pq")):
        return "parquet"
    if path.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise ProfileError(f"cannot tell the format of {redact(uri)}: set spec.reference.format to csv or parquet")


@contextlib.contextmanager
def columns(uri: str, policy: Policy, fmt: str | None = None) -> Iterator[Table]:
    """The dataset at ``uri`` (opened under ``policy``), read a column at a time. Parse errors are ProfileError
    with the kind of failure only (parsers quote the offending line)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    fmt = fmt or infer_format(uri)
    failures = (pa.ArrowException, OSError, ValueError)

    def unreadable() -> ProfileError:
        return ProfileError(f"cannot read the dataset as {fmt} ({type(sys.exc_info()[1]).__name__})")

    with opened(uri, policy) as data, tempfile.TemporaryDirectory(prefix="mlops-dataset-") as tmp:
        if fmt == "parquet":
            try:
                schema = pq.ParquetFile(data).schema_arrow
                # Text columns as dictionaries: read and counted several times faster than plain strings.
                text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
                parquet = pq.ParquetFile(data, read_dictionary=text)
            except failures:
                raise unreadable() from None

            def parquet_column(name: str) -> pa.ChunkedArray:
                try:
                    return parquet.read(columns=[name], use_threads=False).column(0)
                except failures:
                    raise unreadable() from None

            yield Table(fmt, list(parquet.schema_arrow.names), parquet.metadata.num_rows, parquet_column)
            return
        arrow_path = os.path.join(tmp, "data.arrow")
        try:
            reader = pacsv.open_csv(_decompressed(uri, data))
            with pa.OSFile(arrow_path, "wb") as sink, ipc.new_file(sink, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
            with pa.memory_map(arrow_path) as source:
                arrow = ipc.open_file(source)
                names = list(arrow.schema.names)
                rows = sum(arrow.get_batch(i).num_rows for i in range(arrow.num_record_batches))
        except failures:
            raise unreadable() from None

        def csv_column(name: str) -> pa.ChunkedArray:
            # A fresh mapping per column, dropped with the column: pages of columns already read leave the
            # process's memory.
            try:
                with pa.memory_map(arrow_path) as source:
                    return ipc.open_file(source).read_all().column(name)
            except failures:
                raise unreadable() from None

        yield Table(fmt, names, rows, csv_column)


@dataclass(frozen=True)
class Table:
    """A dataset being read: its format, column names, row count, and one column at a time."""

    format: str
    names: list[str]
    rows: int
    column: Callable[[str], Any]


def profile_dataset(
    uri: str,
    policy: Policy,
    fmt: str | None = None,
    features: list[str] | None = None,
    prediction: str | None = None,
) -> dict[str, Any]:
    """The profile of the dataset at ``uri``, opened under ``policy``."""
    with columns(uri, policy, fmt) as table:
        wanted = list(features) if features else [n for n in table.names if n != prediction]
        if prediction:
            wanted.append(prediction)
        if table.rows == 0:
            raise ProfileError(f"the {table.format} dataset has no rows")
        missing = [n for n in wanted if n not in table.names]
        if missing:
            # Only names the spec asked for: the dataset's own header is not echoed.
            raise ProfileError(f"columns not in the dataset: {', '.join(missing)} (it has {len(table.names)} columns)")
        profiled: dict[str, Any] = {}
        skipped: list[dict[str, str]] = []
        for name in wanted:
            result = profile_column(table.column(name))
            if isinstance(result, str):
                skipped.append({"name": name, "reason": result})
            else:
                profiled[name] = result
    out: dict[str, Any] = {"format": FORMAT, "rows": int(table.rows), "features": profiled}
    if prediction:
        out["prediction"] = prediction
    if skipped:
        out["skipped"] = skipped
    return out


# A path would have told pyarrow the compression by its extension; an open file does not.
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}


def _decompressed(uri: str, data: Any) -> Any:
    import pyarrow as pa

    ext = os.path.splitext(uri.lower().split("?", 1)[0])[1]
    return pa.CompressedInputStream(data, _COMPRESSION[ext]) if ext in _COMPRESSION else data


def profile_column(values: Any) -> dict[str, Any] | str:
    """The profile of one Arrow column, or why it has none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = values.type
    nulls = int(values.null_count)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        data = values.drop_null().to_numpy().astype(np.float64, copy=False)
        finite = np.isfinite(data)
        if not finite.all():
            # NaN and infinities carry no position on the axis: counted with the nulls.
            nulls += int((~finite).sum())
            data = data[finite]
        return numeric_feature(data, nulls)
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_dictionary(kind)
    ):
        counted = pc.value_counts(values.drop_null())
        return categorical_feature(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), nulls)
    return f"type {kind} is neither numeric nor categorical"
