"""Memory any user can make the API spend is bounded: no request raises the API's peak resident
set by more than 512 MiB, and a dataset over the decoding limits gets a 422 that names the limit.

Each case is a request through the app, run in `memory_probe` (a subprocess, so that its peak
RSS belongs to the request alone); the hostile inputs are built here. Their sizes before the
limits existed: two 4096x4096 PNGs zipped into 452 bytes took +1.75 GiB; three 8000x8000 images
took +10 GiB in a worker's trial; digits at ``image_size`` 256 +2 GiB, at 512 10.5 GB; the
sample grid of large images +1.3 GiB.
"""

from __future__ import annotations

import io
import json
import math
import os
import select
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from search.datasets import DatasetError, DigitsSpec, cache_key, load_dataset
from search.datasets.cache import cache_path, write_cached
from search.datasets.dataset import make_dataset
from search.datasets.limits import DecodeLimits
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("memory_probe.py")
BUDGET_MIB = 512
# A request refused from headers or shapes decodes nothing: what it spends is small.
REFUSED_MIB = 64


class Probe:
    """The probe subprocess: one JSON request in, one JSON answer out."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "probe.log"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "OMP_NUM_THREADS": "1",
            # Large blocks are mapped and unmapped, so memory a case frees goes back to the
            # system and the next case cannot reuse it unseen.
            "MALLOC_MMAP_THRESHOLD_": "131072",
        }
        self.proc = subprocess.Popen(
            [sys.executable, str(PROBE), str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self._line(timeout=180) == "ready"

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            raise AssertionError(f"the probe gave no answer: {self.log.read_text()[-3000:]}")
        return line.strip()

    def send(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._line(timeout=120))
        print(request.get("url") or request.get("load"), answer)  # shown with -s
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[Probe]:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("the peak RSS is measured through Linux's /proc/self/clear_refs")
    folder = tmp_path_factory.mktemp("memory-probe")
    shutil.copy(migrated_template, folder / "augsearch.db")
    running = Probe(folder)
    yield running
    running.close()


def png(size: int, mode: str = "L", colour: int | tuple[int, ...] = 0) -> bytes:
    """A PNG of one colour: a few kB however many pixels it declares."""
    buffer = io.BytesIO()
    Image.new(mode, (size, size), colour).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def upload(archive: Path, image_size: int | None = None) -> dict[str, Any]:
    data = {} if image_size is None else {"image_size": str(image_size)}
    return {
        "method": "POST",
        "url": "/api/v1/datasets/upload",
        "upload": str(archive),
        "data": data,
    }


@pytest.fixture(scope="module")
def two_large_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    big = png(4096)
    members = {"cat/1.png": big, "dog/1.png": big}
    return write_zip(tmp_path_factory.mktemp("pngs") / "two.zip", members)


@pytest.fixture(scope="module")
def three_huge_pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    huge = png(8000, mode="1")  # 64 megapixels
    members = {"cat/1.png": huge, "cat/2.png": huge, "dog/1.png": huge}
    return write_zip(tmp_path_factory.mktemp("pngs") / "three.zip", members)


def test_a_tiny_zip_of_two_4096px_pngs_is_refused_from_the_headers(
    probe: Probe, two_large_pngs: Path
) -> None:
    assert two_large_pngs.stat().st_size < 2048
    answer = probe.send(upload(two_large_pngs))
    assert answer["status"] == 422
    assert "4096x4096" in answer["body"] and "max_image_size" in answer["body"]
    assert answer["growth_mib"] < REFUSED_MIB


def test_the_same_pngs_resized_on_decoding_stay_within_budget(
    probe: Probe, two_large_pngs: Path
) -> None:
    answer = probe.send(upload(two_large_pngs, image_size=64))
    assert answer["status"] == 201, answer
    assert json.loads(answer["body"])["image_size"] == 64
    assert answer["growth_mib"] < BUDGET_MIB


def test_images_over_the_pixel_cap_are_refused_before_decoding(
    probe: Probe, three_huge_pngs: Path
) -> None:
    answer = probe.send(upload(three_huge_pngs, image_size=32))
    assert answer["status"] == 422
    assert "3 image file(s)" in answer["body"] and "max_image_pixels" in answer["body"]
    assert answer["growth_mib"] < REFUSED_MIB


def test_a_worker_refuses_the_same_images_before_decoding(
    probe: Probe, three_huge_pngs: Path
) -> None:
    spec = {"source": "archive", "path": str(three_huge_pngs), "image_size": 32}
    answer = probe.send({"load": spec})
    assert answer["status"] == "refused" and "max_image_pixels" in answer["body"]
    assert answer["growth_mib"] < REFUSED_MIB


def test_digits_at_image_size_256_decode_within_budget(probe: Probe) -> None:
    body = {"source": "digits", "image_size": 256}
    answer = probe.send({"method": "POST", "url": "/api/v1/datasets", "json": body})
    assert answer["status"] == 201, answer
    assert json.loads(answer["body"])["image_size"] == 256
    assert answer["growth_mib"] < BUDGET_MIB


def test_digits_at_image_size_512_are_refused_before_resizing(probe: Probe) -> None:
    body = {"source": "digits", "image_size": 512}
    answer = probe.send({"method": "POST", "url": "/api/v1/datasets", "json": body})
    assert answer["status"] == 422
    assert "max_dataset_bytes" in answer["body"]
    assert answer["growth_mib"] < REFUSED_MIB


def test_the_sample_grid_of_the_largest_images_is_drawn_from_thumbnails(
    probe: Probe, tmp_path: Path
) -> None:
    members = {
        f"class{c:02d}/{i}.png": png(512, mode="RGB", colour=(10 * c, 8 * i, 90))
        for c in range(20)
        for i in range(8)
    }
    registered = probe.send(upload(write_zip(tmp_path / "grid.zip", members)))
    assert registered["status"] == 201, registered
    dataset = json.loads(registered["body"])["id"]
    answer = probe.send({"method": "GET", "url": f"/api/v1/datasets/{dataset}/samples.png"})
    assert answer["status"] == 200
    assert answer["png_size"] == [8 * 96, 20 * 96]
    assert answer["growth_mib"] < BUDGET_MIB


def test_the_largest_dataset_the_limits_allow_stays_within_budget(
    probe: Probe, tmp_path: Path
) -> None:
    """Just under ``max_dataset_bytes`` of 512x512 colour images and, decoded last, an image of
    ``max_image_pixels`` in the widest mode Pillow decodes (32-bit float: 9 bytes a pixel while
    it is converted and resized)."""
    limits = DecodeLimits()
    count = limits.max_dataset_bytes // (3 * 512 * 512) - 1
    members = {f"c{i % 2}/{i:03d}.png": png(512, "RGB", (i % 256, 0, 0)) for i in range(count)}
    buffer = io.BytesIO()
    side = math.isqrt(limits.max_image_pixels)
    Image.new("F", (side, side)).save(buffer, format="TIFF", compression="tiff_deflate")
    members["c1/zzz.tif"] = buffer.getvalue()
    answer = probe.send(upload(write_zip(tmp_path / "edge.zip", members)))
    assert answer["status"] == 201, answer
    assert json.loads(answer["body"])["num_images"] == count + 1
    assert answer["growth_mib"] < BUDGET_MIB


def test_a_cached_dataset_over_the_limits_is_not_served(tmp_path: Path) -> None:
    """A dataset cached with images over ``max_image_size`` (before the limit existed) is
    decoded anew, and so refused with the reason if it still is, instead of being handed to a
    sample grid or a trial at its full size."""
    spec = DigitsSpec(image_size=64)
    images = torch.zeros((2, 1, 1024, 1024), dtype=torch.uint8)
    large = make_dataset(images, torch.tensor([0, 1]), ["0", "1"])
    write_cached(cache_path(tmp_path, cache_key(spec)), large)
    served = load_dataset(spec, tmp_path, DecodeLimits(max_image_size=1024))
    assert served.image_size == (1024, 1024)  # the cache is read while within the limits
    assert load_dataset(spec, tmp_path).image_size == (64, 64)
    with pytest.raises(DatasetError, match="max_image_size"):
        load_dataset(DigitsSpec(image_size=64), limits=DecodeLimits(max_image_size=32))


def test_the_settings_defaults_are_the_decoding_defaults() -> None:
    settings, limits = Settings(), DecodeLimits()
    assert settings.max_dataset_bytes == limits.max_dataset_bytes == 256 * 1024**2
    assert settings.max_image_pixels == limits.max_image_pixels
    assert settings.max_image_size == limits.max_image_size == 512
