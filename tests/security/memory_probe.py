"""Measure how far one request raises the peak memory (RSS) of the API process.

Run by ``test_security_memory.py`` as a subprocess (with the repository and ``tests/`` on
``PYTHONPATH``): ``python memory_probe.py DIR`` serves the app in-process (multi-user, default limits) on the migrated SQLite database ``DIR/augsearch.db``
with a fresh decoded-dataset cache, warms up every code path the cases take, prints ``ready``,
then reads one JSON request per line on stdin and answers each with one JSON line:

* ``{"method", "url", "json" | "upload" + "data"}``: an HTTP request as the user alice (no
  admin); the answer holds ``status``, the start of the ``body`` and, for a PNG, ``png_size``.
* ``{"load": spec}``: `load_dataset` with the default limits and no cache, as a worker does;
  the answer's ``status`` is ``ok`` or ``refused`` and ``body`` the refusal.

Every answer carries ``growth_mib``: the peak resident set during the request less the resident
set just before it (``/proc/self/clear_refs`` resets the peak; Linux only).
"""

from __future__ import annotations

import gc
import io
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apptools import app_client, runtime_of, temp_settings
from fastapi.testclient import TestClient
from PIL import Image

from search.datasets import DatasetError, load_dataset, parse_dataset_spec
from service.users.service import create_user_with_token


def _status_mib() -> dict[str, float]:
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) / 1024
    return fields


def measured(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``action`` and add how far the peak RSS rose above the RSS before it."""
    gc.collect()
    before = _status_mib()["VmRSS"]
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) restarts from the current RSS
    answer = action()
    answer["growth_mib"] = round(_status_mib()["VmHWM"] - before, 1)
    return answer


def _http(client: TestClient, headers: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"headers": headers}
    if "json" in request:
        kwargs["json"] = request["json"]
    if "upload" in request:
        path = Path(request["upload"])
        kwargs["files"] = {"file": (path.name, path.read_bytes())}
        kwargs["data"] = request.get("data", {})
    response = client.request(request["method"], request["url"], **kwargs)
    answer: dict[str, Any] = {"status": response.status_code}
    if response.headers.get("content-type") == "image/png":
        answer["png_size"] = list(Image.open(io.BytesIO(response.content)).size)
    else:
        answer["body"] = response.text[:2000]
    return answer


def _load(spec: dict[str, Any]) -> dict[str, Any]:
    try:
        load_dataset(parse_dataset_spec(spec))
    except DatasetError as exc:
        return {"status": "refused", "body": str(exc)}
    return {"status": "ok"}


def _tiny_zip(folder: Path) -> Path:
    path = folder / "warm-up.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for label, colour in (("cat", 40), ("dog", 200)):
            for i in range(2):
                buffer = io.BytesIO()
                Image.new("RGB", (8, 8), (colour, i, 0)).save(buffer, format="PNG")
                archive.writestr(f"{label}/{i}.png", buffer.getvalue())
    return path


def _warm_up(client: TestClient, headers: dict[str, str], folder: Path) -> None:
    """Take every path once, so that imports and first-use caches are not counted."""
    tiny = _tiny_zip(folder)
    digits = {"method": "POST", "url": "/api/v1/datasets", "json": {"source": "digits"}}
    upload = {"method": "POST", "url": "/api/v1/datasets/upload", "upload": str(tiny)}
    for request in (digits, {**upload, "data": {"image_size": "16"}}):
        answer = _http(client, headers, request)
        assert answer["status"] == 201, answer
        dataset = json.loads(answer["body"])["id"]
        samples = {"method": "GET", "url": f"/api/v1/datasets/{dataset}/samples.png"}
        assert _http(client, headers, samples)["status"] == 200
    for spec in ({"source": "archive", "path": str(tiny)}, {"source": "digits"}):
        assert _load(spec)["status"] == "ok"


def main(folder: Path) -> None:
    (folder / "cache").mkdir()
    settings = temp_settings(
        folder,
        f"sqlite:///{folder / 'augsearch.db'}",
        folder / "cache",
        folder / "roots" / "root",
        single_user=False,
    )
    with app_client(settings) as client:
        with runtime_of(client).transaction() as session:
            token = create_user_with_token(session, "alice", False)[1]
        headers = {"Authorization": f"Bearer {token}"}
        _warm_up(client, headers, folder)
        print("ready", flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            if "load" in request:
                answer = measured(lambda r=request: _load(r["load"]))
            else:
                answer = measured(lambda r=request: _http(client, headers, r))
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
