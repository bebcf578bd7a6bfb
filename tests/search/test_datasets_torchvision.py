"""torchvision datasets read from the real on-disk formats, written here byte by byte."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pydantic
import pytest
import torch
from scipy.io import savemat  # scikit-learn depends on scipy

from search.datasets import DatasetError, TorchvisionSpec, load_dataset, parse_dataset_spec


def _spec(root: Path, name: str, split: str = "train") -> TorchvisionSpec:
    return TorchvisionSpec(path=str(root), name=name, split=split)  # type: ignore[arg-type]


def _cifar_records(rng: np.random.Generator, n: int, label_bytes: list[np.ndarray]) -> bytes:
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return np.concatenate([*(lb.reshape(n, 1) for lb in label_bytes), pixels], axis=1).tobytes()


def test_cifar10_binary_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(1, 6):
        lab = rng.integers(0, 10, 4, dtype=np.uint8)
        labels.extend(lab.tolist())
        (folder / f"data_batch_{i}.bin").write_bytes(_cifar_records(rng, 4, [lab]))
    test_labels = np.arange(3, dtype=np.uint8)
    test_bytes = _cifar_records(rng, 3, [test_labels])
    (folder / "test_batch.bin").write_bytes(test_bytes)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")

    train = load_dataset(_spec(tmp_path, "CIFAR10"))
    assert train.images.shape == (20, 3, 32, 32) and train.labels.tolist() == labels
    assert train.classes == names
    test = load_dataset(_spec(tmp_path, "CIFAR10", "test"))
    first = np.frombuffer(test_bytes, np.uint8)[1:3073].reshape(3, 32, 32)
    assert torch.equal(test.images[0], torch.from_numpy(first.copy()))
    assert test.labels.tolist() == [0, 1, 2]


def test_cifar100_binary_uses_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rng = np.random.default_rng(1)
    coarse = rng.integers(0, 20, 6, dtype=np.uint8)
    fine = np.array([0, 99, 5, 42, 7, 7], dtype=np.uint8)
    (folder / "train.bin").write_bytes(_cifar_records(rng, 6, [coarse, fine]))
    (folder / "fine_label_names.txt").write_text("\n".join(f"fine{i}" for i in range(100)))
    ds = load_dataset(_spec(tmp_path, "CIFAR100"))
    assert ds.labels.tolist() == fine.tolist() and ds.num_classes == 100
    assert ds.classes[99] == "fine99"


def test_cifar_batch_of_wrong_length_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "test.bin").write_bytes(b"\0" * 3073)  # CIFAR-10 record size, not CIFAR-100's
    with pytest.raises(DatasetError, match="not a CIFAR binary batch"):
        load_dataset(_spec(tmp_path, "CIFAR100", "test"))


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize(("name", "zipped"), [("MNIST", True), ("FashionMNIST", False)])
def test_mnist_idx_files(tmp_path: Path, name: str, zipped: bool) -> None:
    raw = tmp_path / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 5, 9], dtype=np.uint8)
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        data = _idx(array)
        if zipped:
            (raw / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / stem).write_bytes(data)
    ds = load_dataset(_spec(tmp_path, name, "test"))
    assert ds.images.shape == (7, 1, 28, 28) and ds.channels == 1
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == labels.tolist()
    assert ds.classes[9] == ("9" if name == "MNIST" else "Ankle boot")


def test_truncated_idx_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = _idx(np.zeros((3, 28, 28), np.uint8))
    (raw / "train-images-idx3-ubyte").write_bytes(images[:-10])
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx(np.zeros(3, np.uint8)))
    with pytest.raises(DatasetError, match="header announces"):
        load_dataset(_spec(tmp_path, "MNIST"))


def test_svhn_mat_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": y})
    ds = load_dataset(_spec(tmp_path, "SVHN", "test"))
    assert ds.labels.tolist() == [0, 1, 2, 0, 9]
    assert torch.equal(ds.images[1], torch.from_numpy(x[:, :, :, 1].transpose(2, 0, 1).copy()))


def test_missing_files_name_themselves_and_the_download_flag(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"data_batch_1\.bin.*download=true"):
        load_dataset(_spec(tmp_path, "CIFAR10"))


def test_spec_rules() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"torchvision\.name\s+Field required"):
        parse_dataset_spec({"source": "torchvision", "path": "/data"})
    with pytest.raises(pydantic.ValidationError, match="SVHN only"):
        parse_dataset_spec(
            {"source": "torchvision", "path": "/data", "name": "CIFAR10", "split": "extra"}
        )
    with pytest.raises(pydantic.ValidationError, match=r"imagefolder\.path\s+Field required"):
        parse_dataset_spec({"source": "imagefolder"})
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        parse_dataset_spec({"source": "digits", "colour": "yes"})
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        parse_dataset_spec({"source": "MNIST"})
