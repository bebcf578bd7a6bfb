"""Text tables: CSV, JSONL or Parquet files of ``text`` and ``label`` (optional ``group``,
``split``).

The rules are the image manifests' (:mod:`search.datasets.manifest`): row numbers in messages
count data rows from 1 (the header is not a row; blank lines are skipped but counted in JSONL,
where a row is a line); empty cells, unknown split values and classes without training rows are
refused naming the rows. Files are UTF-8 (a leading byte-order mark is skipped); a row that is
not valid UTF-8 is refused by number. A file larger than ``max_file_bytes``, with more than
``max_rows`` rows, or with a text longer than ``max_text_chars`` is refused before it is used.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from search.datasets.dataset import SPLIT_CODES, DatasetError
from search.text.dataset import DEFAULT_TEXT_LIMITS, TextDataset, TextLimits

SUFFIXES = (".csv", ".jsonl", ".parquet")
REQUIRED = ("text", "label")
COLUMNS = (*REQUIRED, "group", "split")
_LISTED = 10

Columns = dict[str, list[str]]


def _rows(numbers: list[int]) -> str:
    more = f" and {len(numbers) - _LISTED} more" if len(numbers) > _LISTED else ""
    word = "row" if len(numbers) == 1 else "rows"
    return f"{word} " + ", ".join(str(n) for n in numbers[:_LISTED]) + more


def _check_header(what: str, names: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise DatasetError(
            f"{what} lacks the column(s) {', '.join(missing)}; it has: "
            f"{', '.join(names) or 'no columns'} (needed: text, label; optional: group, split)"
        )


def _read_csv(name: str, raw: bytes, limits: TextLimits) -> Columns:
    # Undecodable bytes become lone surrogates, so the row that holds them can be named.
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip() for cell in next(reader, [])]
    _check_header(f"text table {name!r}", header)
    where = {c: header.index(c) for c in COLUMNS if c in header}
    columns: Columns = {c: [] for c in where}
    row = 0
    for cells in reader:
        if not cells:
            continue
        row += 1
        if row > limits.max_rows:
            raise DatasetError(f"text table {name!r} has more than {limits.max_rows} rows")
        if len(cells) != len(header):
            raise DatasetError(
                f"text table {name!r} row {row} has {len(cells)} fields, the header {len(header)}"
            )
        if any(_undecodable(cell) for cell in cells):
            raise DatasetError(f"text table {name!r} row {row} is not valid UTF-8")
        for column, i in where.items():
            columns[column].append(cells[i].strip())
    return columns


def _undecodable(cell: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in cell)


def _read_jsonl(name: str, raw: bytes, limits: TextLimits) -> Columns:
    columns: Columns = {c: [] for c in COLUMNS}
    present: set[str] = set()
    lines = raw.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    count = 0
    for row, line in enumerate(lines, 1):
        if not line.strip():
            continue
        count += 1
        if count > limits.max_rows:
            raise DatasetError(f"text table {name!r} has more than {limits.max_rows} rows")
        try:
            record = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"text table {name!r} row {row} is not valid UTF-8") from exc
        except json.JSONDecodeError as exc:
            raise DatasetError(f"text table {name!r} row {row} is not JSON: {exc}") from exc
        if not isinstance(record, dict):
            raise DatasetError(f"text table {name!r} row {row} is not a JSON object")
        _check_header(f"text table {name!r} row {row}", list(record))
        present.update(c for c in COLUMNS if c in record)
        for column in COLUMNS:
            columns[column].append(_cell(name, row, column, record.get(column)))
    return {c: values for c, values in columns.items() if c in present or c in REQUIRED}


def _cell(name: str, row: int, column: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DatasetError(
            f"text table {name!r} row {row}: {column!r} must be a string or a number, "
            f"not {type(value).__name__}"
        )
    return str(value).strip()


def _read_parquet(name: str, raw: bytes, limits: TextLimits) -> Columns:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(raw))
        names = list(parquet.schema_arrow.names)
        _check_header(f"text table {name!r}", names)
        if parquet.metadata.num_rows > limits.max_rows:
            raise DatasetError(f"text table {name!r} has more than {limits.max_rows} rows")
        table = parquet.read(columns=[c for c in COLUMNS if c in names])
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"text table {name!r} cannot be read as Parquet: {exc}") from exc
    columns: Columns = {}
    for column in table.column_names:
        values = []
        for row, value in enumerate(table.column(column).to_pylist(), 1):
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DatasetError(
                        f"text table {name!r} row {row} is not valid UTF-8 ({column!r})"
                    ) from exc
            values.append(_cell(name, row, column, value))
        columns[column] = values
    return columns


_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


def _check_cells(name: str, columns: Columns, limits: TextLimits) -> None:
    if not columns["text"]:
        raise DatasetError(f"text table {name!r} has no rows")
    for column, values in columns.items():
        empty = [n for n, v in enumerate(values, 1) if not v]
        if empty:
            raise DatasetError(f"text table {name!r} has empty {column!r} cells in {_rows(empty)}")
    long = [n for n, v in enumerate(columns["text"], 1) if len(v) > limits.max_text_chars]
    if long:
        raise DatasetError(
            f"text table {name!r} has texts longer than {limits.max_text_chars} characters "
            f"(max_text_chars) in {_rows(long)}"
        )
    splits = columns.get("split")
    if splits is not None:
        bad = [n for n, v in enumerate(splits, 1) if v not in SPLIT_CODES]
        if bad:
            shown = ", ".join(sorted({repr(splits[n - 1]) for n in bad}))
            raise DatasetError(
                f"text table {name!r} has unknown split value(s) {shown} in {_rows(bad)}; "
                "use train, val or test"
            )
        trained = {lab for lab, s in zip(columns["label"], splits, strict=True) if s == "train"}
        untrained = sorted(set(columns["label"]) - trained)
        if untrained:
            raise DatasetError(
                f"text table {name!r}: classes without 'train' rows: {', '.join(untrained)}"
            )


def _names(values: list[str]) -> list[str]:
    unique = set(values)
    if all(v.lstrip("-").isdigit() for v in unique):
        return sorted(unique, key=int)
    return sorted(unique)


def _ids(values: list[str], names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in values], dtype=np.int64)


def load_text_table(path: str | Path, limits: TextLimits = DEFAULT_TEXT_LIMITS) -> TextDataset:
    """Read and check a text table (see the module rules).

    Raises:
        DatasetError: naming the file, and the rows where a row is at fault.
    """
    file = Path(path)
    name = file.name
    suffix = file.suffix.lower()
    if suffix not in _READERS:
        raise DatasetError(f"text table {name!r} must be a .csv, .jsonl or .parquet file")
    if not file.is_file():
        raise DatasetError(f"text table {str(path)!r} does not exist or is not a file")
    size = file.stat().st_size
    if size > limits.max_file_bytes:
        raise DatasetError(
            f"text table {name!r} is {size} bytes, more than the limit of "
            f"{limits.max_file_bytes} (max_file_bytes)"
        )
    columns = _READERS[suffix](name, file.read_bytes()[: limits.max_file_bytes], limits)
    _check_cells(name, columns, limits)
    classes = _names(columns["label"])
    if len(classes) < 2:
        raise DatasetError(
            f"text table {name!r} has {len(classes)} class(es); classification needs at least 2"
        )
    groups, group_names = None, []
    if "group" in columns:
        group_names = _names(columns["group"])
        groups = _ids(columns["group"], group_names)
    splits = None
    if "split" in columns:
        splits = np.array([SPLIT_CODES[s] for s in columns["split"]], dtype=np.int64)
    return TextDataset(
        texts=columns["text"],
        labels=_ids(columns["label"], classes),
        classes=classes,
        groups=groups,
        group_names=group_names,
        splits=splits,
    )
