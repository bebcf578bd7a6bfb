"""Text datasets: the built-in WordNet topics, CSV/JSONL/Parquet tables and their checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from search.datasets.spec import (
    DigitsSpec,
    TextTableSpec,
    WordNetTopic,
    WordNetTopicsSpec,
    is_text_spec,
    parse_any_dataset_spec,
    parse_dataset_spec,
    parse_text_dataset_spec,
)
from search.text.builtin import TOPIC_FILES
from search.text.dataset import DatasetError, TextLimits, stratified_indices
from search.text.loader import load_text_dataset
from search.text.tables import load_text_table

ROWS = [("a red apple", "fruit"), ("a yellow banana", "fruit"), ("a fast car", "vehicle")]


def test_specs_are_a_union_on_source() -> None:
    assert isinstance(parse_text_dataset_spec({"source": "wordnet-topics"}), WordNetTopicsSpec)
    assert isinstance(
        parse_any_dataset_spec({"source": "text-table", "path": "x.csv"}), TextTableSpec
    )
    assert isinstance(parse_any_dataset_spec({"source": "digits"}), DigitsSpec)
    assert is_text_spec(WordNetTopicsSpec()) and not is_text_spec(DigitsSpec())
    with pytest.raises(ValidationError, match="wordnet-topics"):
        parse_dataset_spec({"source": "wordnet-topics"})  # image specs stay images only
    with pytest.raises(ValidationError, match="topics must not repeat"):
        parse_text_dataset_spec({"source": "wordnet-topics", "topics": ["food", "food"]})
    with pytest.raises(ValidationError, match="image_size"):
        parse_text_dataset_spec({"source": "text-table", "path": "x.csv", "image_size": 32})
    assert tuple(TOPIC_FILES) == get_args(WordNetTopic)


def test_wordnet_topics_is_fixed_and_holds_out_test() -> None:
    spec = WordNetTopicsSpec(topics=["animal", "food", "artifact"], per_class=40)
    ds = load_text_dataset(spec)
    assert ds.classes == ["animal", "food", "artifact"] and len(ds) == 120
    assert np.bincount(ds.labels).tolist() == [40, 40, 40]
    assert ds.splits is not None and int((ds.splits == 2).sum()) == 24
    assert all(len(text.split()) >= 3 and '"' not in text for text in ds.texts)
    assert load_text_dataset(spec).content_hash == ds.content_hash
    assert len(ds.part("test")) == 24 and len(ds.part("train")) == 96


def test_stratified_indices() -> None:
    labels = np.repeat(np.arange(3), 20)
    rest, held = stratified_indices(labels, 0.25, seed=0)
    assert len(held) == 15 and np.bincount(labels[held]).tolist() == [5, 5, 5]
    assert set(rest).isdisjoint(held) and len(rest) == 45
    small, _ = stratified_indices(labels, 0.25, seed=0, size=9)
    assert np.bincount(labels[small]).tolist() == [3, 3, 3]
    with pytest.raises(DatasetError, match="exceeds"):
        stratified_indices(labels, 0.25, seed=0, size=100)


def _write(tmp_path: Path, fmt: str, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(str(r[k]) for k in keys) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tables_read_texts_labels_groups_and_splits(tmp_path: Path, fmt: str) -> None:
    rows: list[dict[str, object]] = [
        {"text": t, "label": lab, "group": f"g{i % 2}", "split": "test" if i == 1 else "train"}
        for i, (t, lab) in enumerate(ROWS)
    ]
    ds = load_text_dataset(TextTableSpec(path=str(_write(tmp_path, fmt, rows))))
    assert ds.texts == [t for t, _ in ROWS]
    assert ds.classes == ["fruit", "vehicle"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.group_names == ["g0", "g1"] and ds.groups is not None
    assert ds.splits is not None and ds.splits.tolist() == [0, 2, 0]


def test_encoding_errors_name_the_row(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_bytes(b"text,label\nfine text,a\nbad \xff text,b\n")
    with pytest.raises(DatasetError, match=r"'bad.csv' row 2 is not valid UTF-8"):
        load_text_table(csv_path)
    jsonl_path = tmp_path / "bad.jsonl"
    jsonl_path.write_bytes(b'{"text": "ok", "label": "a"}\n{"text": "\xfe", "label": "b"}\n')
    with pytest.raises(DatasetError, match="row 2 is not valid UTF-8"):
        load_text_table(jsonl_path)
    parquet_path = tmp_path / "bad.parquet"
    table = pa.table({"text": pa.array([b"ok", b"x\xff"], pa.binary()), "label": ["a", "b"]})
    pq.write_table(table, parquet_path)
    with pytest.raises(DatasetError, match="row 2 is not valid UTF-8"):
        load_text_table(parquet_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\n", "has no rows"),
        ("words,label\nx,a\n", "lacks the column"),
        ("text,label\nx,a\n,b\n", "empty 'text' cells in row 2"),
        ("text,label\nx,a\n", "1 class"),
        ("text,label,split\nx,a,train\ny,b,dev\n", "unknown split value"),
        ("text,label,split\nx,a,train\ny,b,test\n", "without 'train' rows: b"),
        ("text,label\nx,a,extra\n", "row 1 has 3 fields"),
    ],
)
def test_bad_csv_tables_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_text_table(path)


def test_bad_jsonl_rows_and_limits(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "x", "label": "a"}\n[1]\n')
    with pytest.raises(DatasetError, match="row 2 is not a JSON object"):
        load_text_table(path)
    path.write_text('{"text": "x", "label": "a"}\n{"text": "y"}\n')
    with pytest.raises(DatasetError, match=r"'t.jsonl' row 2 lacks the column"):
        load_text_table(path)
    path.write_text('{"text": "x", "label": "a"}\n{"text": {"a": 1}, "label": "b"}\n')
    with pytest.raises(DatasetError, match="row 2: 'text' must be a string"):
        load_text_table(path)
    path.write_text(
        "\n".join(json.dumps({"text": "w " * 20, "label": str(i % 2)}) for i in range(5))
    )
    with pytest.raises(DatasetError, match="max_file_bytes"):
        load_text_table(path, TextLimits(max_file_bytes=50))
    with pytest.raises(DatasetError, match="more than 3 rows"):
        load_text_table(path, TextLimits(max_rows=3))
    with pytest.raises(DatasetError, match="longer than 10 characters"):
        load_text_table(path, TextLimits(max_text_chars=10))
    with pytest.raises(DatasetError, match=r"must be a \.csv"):
        load_text_table(tmp_path / "t.txt")
    with pytest.raises(DatasetError, match="does not exist"):
        load_text_table(tmp_path / "missing.csv")
