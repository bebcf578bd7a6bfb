"""Validation the user controls: split folders, CSV/Parquet manifests with groups and splits,
and the union of dataset specs (old stored specs still validate)."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest
import torch
from PIL import Image

from search.datasets import (
    SPLIT_CODES,
    ArchiveSpec,
    DatasetError,
    ImageDataset,
    ImageFolderSpec,
    ManifestSpec,
    load_dataset,
    parse_dataset_spec,
)
from search.spec import SearchSpec
from search.splits import SearchData, split_for_search

FIXTURES = Path(__file__).parents[1] / "fixtures" / "specs"


class Ids:
    """Writes 8x8 grey PNGs whose top-left pixel is a unique id, to trace images to splits."""

    def __init__(self) -> None:
        self.next = 1

    def png(self, path: Path) -> int:
        ident = self.next
        self.next += 1
        pixels = np.random.default_rng(ident).integers(0, 256, (8, 8), dtype=np.uint8)
        pixels[0, 0] = ident
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        return ident


def _ids(ds: ImageDataset | None) -> set[int]:
    assert ds is not None
    return set(ds.images[:, 0, 0, 0].tolist())


def _split_folder(root: Path, ids: Ids, counts: dict[str, dict[str, int]]) -> dict[str, set[int]]:
    """``counts[split][class]`` images per class folder; returns the ids written per split."""
    written: dict[str, set[int]] = {}
    for split, classes in counts.items():
        written[split] = {
            ids.png(root / split / cls / f"{i}.png") for cls, n in classes.items() for i in range(n)
        }
    return written


def _search_spec(dataset: dict[str, Any], **kw: Any) -> SearchSpec:
    return SearchSpec.model_validate({"dataset": dataset, "val_fraction": 0.25, **kw})


def _split(ds: ImageDataset, **kw: Any) -> SearchData:
    return split_for_search(ds, _search_spec({"source": "digits"}, **kw))


def test_folder_with_train_and_val_is_split_as_given(tmp_path: Path) -> None:
    given = _split_folder(
        tmp_path / "data", Ids(), {"train": {"a": 6, "b": 6}, "val": {"a": 2, "b": 3}}
    )
    ds = load_dataset(ImageFolderSpec(path=str(tmp_path / "data")))
    assert ds.classes == ["a", "b"] and len(ds) == 17
    assert ds.splits is not None
    assert torch.bincount(ds.splits, minlength=3).tolist() == [12, 5, 0]
    data = _split(ds, train_size=10, holdout_fraction=0.0)
    assert _ids(data.val) == given["val"] and _ids(data.final_train) == given["train"]
    assert len(data.search_train) == 10 and _ids(data.search_train) <= given["train"]
    assert data.test is None
    assert data.val.counts_per_class() == {"a": 2, "b": 3}


def test_folder_with_a_test_split_holds_it_out(tmp_path: Path) -> None:
    counts = {"train": {"a": 5, "b": 5}, "val": {"a": 2, "b": 2}, "test": {"a": 3, "b": 1}}
    given = _split_folder(tmp_path / "data", Ids(), counts)
    ds = load_dataset(ImageFolderSpec(path=str(tmp_path / "data")))
    # holdout_fraction is not used when the user gave the test split.
    data = _split(ds, holdout_fraction=0.3)
    assert _ids(data.test) == given["test"]
    assert _ids(data.val) == given["val"] and _ids(data.final_train) == given["train"]
    assert data.test is not None and data.test.splits is not None
    assert set(data.test.splits.tolist()) == {SPLIT_CODES["test"]}


def test_split_folders_whose_classes_differ_are_named(tmp_path: Path) -> None:
    counts = {"train": {"a": 2, "b": 2, "c": 2}, "val": {"a": 1, "b": 1, "d": 1}}
    _split_folder(tmp_path / "data", Ids(), counts)
    with pytest.raises(
        DatasetError, match=r"val/ and train/ differ.*only in train/: c; only in val/: d"
    ):
        load_dataset(ImageFolderSpec(path=str(tmp_path / "data")))


def test_stray_folder_beside_split_folders_is_refused(tmp_path: Path) -> None:
    counts = {"train": {"a": 2, "b": 2}, "val": {"a": 1, "b": 1}, "extra": {"a": 1, "b": 1}}
    _split_folder(tmp_path / "data", Ids(), counts)
    with pytest.raises(DatasetError, match="only test/, not: extra"):
        load_dataset(ImageFolderSpec(path=str(tmp_path / "data")))


def test_classes_named_train_and_val_stay_classes(tmp_path: Path) -> None:
    ids = Ids()
    for cls in ("train", "val"):
        for i in range(2):
            ids.png(tmp_path / "data" / cls / f"{i}.png")
    ds = load_dataset(ImageFolderSpec(path=str(tmp_path / "data")))
    assert ds.classes == ["train", "val"] and ds.splits is None


def test_splits_survive_the_cache_and_resizing(tmp_path: Path) -> None:
    _split_folder(tmp_path / "data", Ids(), {"train": {"a": 3, "b": 3}, "val": {"a": 1, "b": 2}})
    spec = ImageFolderSpec(path=str(tmp_path / "data"), image_size=16)
    first = load_dataset(spec, cache_dir=tmp_path / "cache")
    again = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert first.image_size == (16, 16)
    assert first.splits is not None and again.splits is not None
    assert torch.equal(first.splits, again.splits)
    assert again.content_hash == first.content_hash
    with pytest.raises(DatasetError, match="splits must hold"):
        ImageDataset(**{**first.__dict__, "splits": torch.full((len(first),), 3)})


# Manifests -----------------------------------------------------------------------------------


def _manifest_rows(
    folder: Path, ids: Ids, groups: int, per_group: int, classes: tuple[str, ...] = ("cat", "dog")
) -> list[dict[str, str]]:
    rows = []
    for g in range(groups):
        for cls in classes:
            for i in range(per_group):
                name = f"images/site{g}/{cls}_{i}.png"
                ident = ids.png(folder / name)
                rows.append({"path": name, "label": cls, "group": f"site{g}", "id": str(ident)})
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_manifest_group_column_holds_out_whole_groups(tmp_path: Path) -> None:
    rows = _manifest_rows(tmp_path, Ids(), groups=4, per_group=3)
    manifest = _write_csv(tmp_path / "manifest.csv", rows, ["path", "label", "group", "id"])
    ds = load_dataset(ManifestSpec(path=str(manifest)))
    assert ds.classes == ["cat", "dog"] and len(ds) == 24 and ds.splits is None
    assert ds.group_names == ["site0", "site1", "site2", "site3"]
    data = _split(ds, val_fraction=0.25)
    assert data.val.groups is not None and data.final_train.groups is not None
    val_groups = set(data.val.groups.tolist())
    assert len(val_groups) == 1
    assert val_groups.isdisjoint(data.final_train.groups.tolist())
    # The held-out group is whole: every image of it is in validation.
    held = ds.group_names[val_groups.pop()]
    assert _ids(data.val) == {int(r["id"]) for r in rows if r["group"] == held}


def test_manifest_split_column_fixes_every_row(tmp_path: Path) -> None:
    rows = _manifest_rows(tmp_path, Ids(), groups=1, per_group=6)
    for i, row in enumerate(rows):
        row["split"] = ("train", "train", "train", "val", "test", "train")[i % 6]
    manifest = _write_csv(tmp_path / "m.csv", rows, ["path", "label", "split"])
    ds = load_dataset(ManifestSpec(path=str(manifest)))
    data = _split(ds, holdout_fraction=0.0)

    def ids_of(split: str) -> set[int]:
        return {int(r["id"]) for r in rows if r["split"] == split}

    assert _ids(data.val) == ids_of("val") and _ids(data.test) == ids_of("test")
    assert _ids(data.final_train) == ids_of("train")


def test_manifest_test_split_with_groups_draws_validation_by_group(tmp_path: Path) -> None:
    rows = _manifest_rows(tmp_path, Ids(), groups=5, per_group=2)
    for row in rows:
        row["split"] = "test" if row["group"] == "site4" else "train"
    manifest = _write_csv(tmp_path / "m.csv", rows, ["path", "label", "group", "split"])
    data = _split(load_dataset(ManifestSpec(path=str(manifest))), holdout_fraction=0.2)
    assert _ids(data.test) == {int(r["id"]) for r in rows if r["split"] == "test"}
    assert data.val.groups is not None and data.final_train.groups is not None
    assert set(data.val.groups.tolist()).isdisjoint(data.final_train.groups.tolist())
    assert 4 not in data.val.groups.tolist() + data.final_train.groups.tolist()


def test_parquet_manifest_decodes_like_the_csv(tmp_path: Path) -> None:
    rows = _manifest_rows(tmp_path, Ids(), groups=2, per_group=2)
    for i, row in enumerate(rows):
        row["split"] = "val" if i % 4 == 0 else "train"
    columns = ["path", "label", "group", "split"]
    from_csv = load_dataset(ManifestSpec(path=str(_write_csv(tmp_path / "m.csv", rows, columns))))
    table = pa.table({c: [r[c] for r in rows] for c in columns})
    pq.write_table(table, tmp_path / "m.parquet")
    from_parquet = load_dataset(ManifestSpec(path=str(tmp_path / "m.parquet")))
    assert from_parquet.content_hash == from_csv.content_hash
    assert from_parquet.group_names == from_csv.group_names == ["site0", "site1"]
    assert from_parquet.splits is not None and from_csv.splits is not None
    assert torch.equal(from_parquet.splits, from_csv.splits)
    assert from_parquet.groups is not None and from_csv.groups is not None
    assert torch.equal(from_parquet.groups, from_csv.groups)


def test_integer_labels_sort_numerically(tmp_path: Path) -> None:
    ids = Ids()
    rows = [{"path": f"{i}.png", "label": str(i % 11)} for i in range(22)]
    for row in rows:
        ids.png(tmp_path / row["path"])
    ds = load_dataset(
        ManifestSpec(path=str(_write_csv(tmp_path / "m.csv", rows, ["path", "label"])))
    )
    assert ds.classes == [str(i) for i in range(11)]


@pytest.fixture
def good_rows(tmp_path: Path) -> list[dict[str, str]]:
    ids = Ids()
    rows = []
    for i in range(4):
        ids.png(tmp_path / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "label": "ab"[i % 2], "split": "train"})
    return rows


@pytest.mark.parametrize(
    ("change", "columns", "message"),
    [
        ({}, ["path", "split"], r"lacks the column\(s\) label; it has: path, split"),
        (
            {"split": "validation"},
            None,
            r"unknown split value\(s\) 'validation' in row 1; use train, val or test",
        ),
        ({"path": "../outside.png"}, None, r"row 1\) escaping the manifest's folder with '\.\.'"),
        ({"path": "/etc/passwd"}, None, r"row 1\) with an absolute path"),
        ({"path": "img/1.png"}, None, r"lists 'img/1\.png' twice \(rows 1, 2\)"),
        ({"path": "img/none.png"}, None, r"1 missing file\(s\) \(row 1\): 'img/none\.png'"),
        ({"label": ""}, None, r"empty 'label' cells in row 1"),
    ],
)
def test_bad_manifests_are_named(
    tmp_path: Path,
    good_rows: list[dict[str, str]],
    change: dict[str, str],
    columns: list[str] | None,
    message: str,
) -> None:
    good_rows[0].update(change)
    manifest = _write_csv(tmp_path / "m.csv", good_rows, columns or ["path", "label", "split"])
    with pytest.raises(DatasetError, match=message):
        load_dataset(ManifestSpec(path=str(manifest)))


def test_manifest_link_leaving_its_folder_is_refused(tmp_path: Path) -> None:
    Ids().png(tmp_path / "secret.png")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "link.png").symlink_to(tmp_path / "secret.png")
    manifest = _write_csv(
        tmp_path / "data" / "m.csv", [{"path": "link.png", "label": "a"}], ["path", "label"]
    )
    with pytest.raises(DatasetError, match="resolves outside the manifest's folder"):
        load_dataset(ManifestSpec(path=str(manifest)))


def test_classes_without_training_rows_are_named(
    tmp_path: Path, good_rows: list[dict[str, str]]
) -> None:
    for row in good_rows:
        if row["label"] == "b":
            row["split"] = "val"
    manifest = _write_csv(tmp_path / "m.csv", good_rows, ["path", "label", "split"])
    with pytest.raises(DatasetError, match="classes without 'train' rows: b"):
        load_dataset(ManifestSpec(path=str(manifest)))


def test_not_a_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("path,label\n")
    with pytest.raises(DatasetError, match=r"\.csv or \.parquet"):
        load_dataset(ManifestSpec(path=str(tmp_path / "m.txt")))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DatasetError, match="cannot be read as Parquet"):
        load_dataset(ManifestSpec(path=str(tmp_path / "bad.parquet")))


def test_archive_holding_a_manifest(tmp_path: Path) -> None:
    rows = _manifest_rows(tmp_path / "src", Ids(), groups=3, per_group=1)
    _write_csv(tmp_path / "src" / "manifest.csv", rows, ["path", "label", "group"])
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted((tmp_path / "src").rglob("*")):
            if file.is_file():
                zf.write(file, f"wrapped/{file.relative_to(tmp_path / 'src')}")
    ds = load_dataset(ArchiveSpec(path=str(archive)))
    assert ds.group_names == ["site0", "site1", "site2"] and len(ds) == 6


# The union of dataset specs --------------------------------------------------------------------


def test_stored_specs_of_the_single_record_still_validate() -> None:
    specs = json.loads((FIXTURES / "v0_dataset_specs.json").read_text())
    parsed = [parse_dataset_spec(s) for s in specs]
    assert [p.source for p in parsed] == [s["source"] for s in specs]
    assert parsed[2].model_dump() == {
        "source": "fonts",
        "image_size": None,
        "path": None,
        "size": 32,
        "characters": "ABC",
        "per_font": 3,
        "seed": 0,
    }
    search = SearchSpec.model_validate_json((FIXTURES / "v0_search_spec_digits.json").read_text())
    assert search.dataset.model_dump() == {"source": "digits", "image_size": None}
    # Dumps carry only the source's own fields and read back the same.
    assert SearchSpec.model_validate_json(search.model_dump_json()) == search


def test_foreign_fields_are_refused_unless_left_at_the_old_default() -> None:
    assert parse_dataset_spec({"source": "digits", "characters": "0123456789"}).source == "digits"
    with pytest.raises(pydantic.ValidationError, match=r"digits\.characters\s+Extra inputs"):
        parse_dataset_spec({"source": "digits", "characters": "AB"})
    with pytest.raises(pydantic.ValidationError, match=r"manifest\.path\s+Field required"):
        parse_dataset_spec({"source": "manifest"})
