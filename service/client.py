"""A small HTTP client of the augsearch API, for the CLI and for users' training scripts.

Two lines give a training script the best policy found for a dataset::

    from service.client import fetch_policy
    transform = fetch_policy("http://localhost:8000", dataset=1, format="torchvision")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(RuntimeError):
    """The server answered with an error; the message carries its status and detail."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class Client:
    """Calls the REST API under ``/api/v1``.

    Args:
        url: Server URL (default: ``AUGSEARCH_URL`` or http://127.0.0.1:8000).
        token: Bearer token (default: ``AUGSEARCH_TOKEN``; not needed in single-user mode).
        timeout: Seconds per request.
        http: An existing httpx client to send through (e.g. an in-process test client).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = (url or os.environ.get("AUGSEARCH_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("AUGSEARCH_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is not None:
            http.headers.update(headers)
            self.url = str(http.base_url).rstrip("/")
        self._http = http or httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, str(detail))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, "/api/v1" + path, **kwargs).json()

    def health(self) -> dict[str, Any]:
        """``/readyz``: the server and its dependencies."""
        result: dict[str, Any] = self._request("GET", "/readyz").json()
        return result

    def add_dataset(self, source: str, **fields: Any) -> dict[str, Any]:
        """Register ``digits``, a torchvision dataset (``dataset=``), or a server ``path=``
        (source ``path``: a folder; ``manifest``: a CSV or Parquet manifest; ``text-table``: a
        .csv, .jsonl or .parquet table of texts), or the built-in text set ``wordnet-topics``
        (``topics=``, ``per_class=``)."""
        body = {"source": source, **{k: v for k, v in fields.items() if v is not None}}
        result: dict[str, Any] = self._json("POST", "/datasets", json=body)
        return result

    def upload_dataset(self, archive: Path, name: str | None = None) -> dict[str, Any]:
        """Upload a zip/tar archive of an ImageFolder tree (optionally with ``train/`` and
        ``val/`` split folders) or of a manifest and its images, or a text table (.csv,
        .jsonl, .parquet of ``text`` and ``label``)."""
        data = {"name": name} if name else {}
        with archive.open("rb") as handle:
            files = {"file": (archive.name, handle, "application/octet-stream")}
            result: dict[str, Any] = self._json("POST", "/datasets/upload", files=files, data=data)
        return result

    def datasets(self, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of datasets."""
        result: dict[str, Any] = self._json(
            "GET", "/datasets", params={"offset": offset, "limit": limit}
        )
        return result

    def start_search(
        self, dataset_id: int, spec: dict[str, Any] | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Launch a search on a dataset with a SearchSpec body (without ``dataset``)."""
        body: dict[str, Any] = {"dataset_id": dataset_id, "spec": spec or {}}
        if name:
            body["name"] = name
        result: dict[str, Any] = self._json("POST", "/searches", json=body)
        return result

    def searches(
        self, state: str | None = None, offset: int = 0, limit: int = 50
    ) -> dict[str, Any]:
        """A page of searches, optionally filtered by state."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if state:
            params["state"] = state
        result: dict[str, Any] = self._json("GET", "/searches", params=params)
        return result

    def search(self, search_id: int) -> dict[str, Any]:
        """One search."""
        result: dict[str, Any] = self._json("GET", f"/searches/{search_id}")
        return result

    def cancel_search(self, search_id: int) -> dict[str, Any]:
        """Cancel a search."""
        result: dict[str, Any] = self._json("POST", f"/searches/{search_id}/cancel")
        return result

    def trials(self, search_id: int, offset: int = 0, limit: int = 50) -> dict[str, Any]:
        """A page of a search's trials."""
        params = {"offset": offset, "limit": limit}
        result: dict[str, Any] = self._json("GET", f"/searches/{search_id}/trials", params=params)
        return result

    def policy(
        self, *, dataset: int | None = None, search: int | None = None, format: str = "json"
    ) -> dict[str, Any]:
        """The best policy of a dataset or a search, in ``format``."""
        if (dataset is None) == (search is None):
            raise ValueError("pass exactly one of dataset= or search=")
        path = (
            f"/datasets/{dataset}/policy" if dataset is not None else f"/searches/{search}/policy"
        )
        result: dict[str, Any] = self._json("GET", path, params={"format": format})
        return result

    def variants(self, search_id: int) -> list[dict[str, Any]]:
        """The compressed variants of a search's checkpoint: state, sha256, card."""
        result: list[dict[str, Any]] = self._json(
            "GET", f"/searches/{search_id}/checkpoint/variants"
        )
        return result

    def request_variant(
        self, search_id: int, format: str, sparsity: float | None = None
    ) -> dict[str, Any]:
        """Ask for a compressed variant (``onnx``, ``int8``, ``pruned``), again if it failed."""
        body: dict[str, Any] = {"format": format}
        if sparsity is not None:
            body["sparsity"] = sparsity
        result: dict[str, Any] = self._json(
            "POST", f"/searches/{search_id}/checkpoint/variants", json=body
        )
        return result

    def download_checkpoint(
        self,
        search_id: int,
        dest: Path,
        format: str = "safetensors",
        sparsity: float | None = None,
        *,
        wait_s: float = 600.0,
        poll_s: float | None = None,
    ) -> str:
        """Save a search's checkpoint, or a compressed variant, to ``dest``; returns its sha256
        (checked against the server's).

        A variant not made yet is requested and waited for (the server answers 202 meanwhile),
        polling every ``poll_s`` seconds (default: the server's ``Retry-After``).

        Raises:
            ApiError: an error answer, a checksum mismatch, or a variant still not ready after
                ``wait_s`` seconds.
        """
        import time

        params: dict[str, Any] = {"format": format}
        if sparsity is not None:
            params["sparsity"] = sparsity
        deadline = time.monotonic() + wait_s
        while True:
            state = self._save(f"/api/v1/searches/{search_id}/checkpoint", params, dest)
            if isinstance(state, str):
                return state
            body, retry_after = state
            if time.monotonic() + (poll_s or retry_after) > deadline:
                raise ApiError(
                    202,
                    f"the {body.get('name', format)} variant of search {search_id} is still "
                    f"{body.get('state')} after {wait_s:g} s; ask again later",
                )
            time.sleep(poll_s or retry_after)

    def add_unlabelled(self, dataset_id: int, path: str, name: str | None = None) -> dict[str, Any]:
        """Attach a server folder of unlabelled images to a dataset (admins)."""
        body = {"dataset_id": dataset_id, "path": path, **({"name": name} if name else {})}
        result: dict[str, Any] = self._json("POST", "/unlabelled", json=body)
        return result

    def upload_unlabelled(
        self, dataset_id: int, archive: Path, name: str | None = None
    ) -> dict[str, Any]:
        """Upload a zip/tar of unlabelled images (any layout) for a dataset."""
        data = {"dataset_id": str(dataset_id), **({"name": name} if name else {})}
        with archive.open("rb") as handle:
            files = {"file": (archive.name, handle, "application/octet-stream")}
            result: dict[str, Any] = self._json(
                "POST", "/unlabelled/upload", files=files, data=data
            )
        return result

    def unlabelled(self, dataset_id: int | None = None) -> dict[str, Any]:
        """A page of unlabelled sets (of one dataset if given)."""
        params = {"dataset_id": dataset_id} if dataset_id is not None else {}
        result: dict[str, Any] = self._json("GET", "/unlabelled", params=params)
        return result

    def start_self_training(
        self, search_id: int, unlabelled_id: int, **options: Any
    ) -> dict[str, Any]:
        """Launch self-training on a completed search (options as in the API's body)."""
        body = {"unlabelled_id": unlabelled_id, **options}
        result: dict[str, Any] = self._json("POST", f"/searches/{search_id}/self-train", json=body)
        return result

    def self_training(self, job_id: int) -> dict[str, Any]:
        """One self-training job with its steps."""
        result: dict[str, Any] = self._json("GET", f"/self-trainings/{job_id}")
        return result

    def self_trainings(self, search_id: int) -> dict[str, Any]:
        """A page of a search's self-training jobs."""
        result: dict[str, Any] = self._json("GET", f"/searches/{search_id}/self-trainings")
        return result

    def cancel_self_training(self, job_id: int) -> dict[str, Any]:
        """Cancel a queued or running self-training job."""
        result: dict[str, Any] = self._json("POST", f"/self-trainings/{job_id}/cancel")
        return result

    def download_self_training_checkpoint(self, job_id: int, dest: Path) -> str:
        """Save the best student's checkpoint to ``dest``; returns its sha256 (checked)."""
        state = self._save(f"/api/v1/self-trainings/{job_id}/checkpoint", {}, dest)
        if not isinstance(state, str):  # pragma: no cover - this route never answers 202
            raise ApiError(202, f"self-training {job_id} has no checkpoint yet")
        return state

    def _save(
        self, path: str, params: dict[str, Any], dest: Path
    ) -> str | tuple[dict[str, Any], float]:
        """Stream one answer to ``dest`` (sha256 checked); a 202's body and Retry-After instead."""
        import hashlib

        digest = hashlib.sha256()
        tmp = dest.with_name(dest.name + ".partial")
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, response.json().get("detail", ""))
                if response.status_code == 202:
                    response.read()
                    return response.json(), float(response.headers.get("Retry-After", 2))
                expected = response.headers.get("X-Checksum-SHA256", "")
                with tmp.open("wb") as out:
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach {self.url}: {exc}") from exc
        if digest.hexdigest() != expected:
            tmp.unlink(missing_ok=True)
            raise ApiError(
                0, f"checksum mismatch: got {digest.hexdigest()}, server says {expected}"
            )
        tmp.replace(dest)
        return expected


def fetch_policy(
    url: str | None = None,
    *,
    dataset: int,
    format: Literal["torchvision", "albumentations", "json"] = "torchvision",
    token: str | None = None,
) -> Any:
    """The best policy for a dataset, ready to use in a training script.

    Args:
        url: Server URL (default ``AUGSEARCH_URL``).
        dataset: Dataset id.
        format: ``torchvision`` (a ``torchvision.transforms.v2`` transform), ``albumentations``
            (an ``A.Compose``) or ``json`` (an ``ops.policy.Policy``).
        token: Bearer token (default ``AUGSEARCH_TOKEN``).

    Returns:
        The transform or policy.
    """
    with Client(url, token) as client:
        payload = client.policy(dataset=dataset, format="json")
    from ops.export import to_albumentations, to_torchvision
    from ops.policy import load_policy

    policy = load_policy(payload["policy"])
    if format == "torchvision":
        return to_torchvision(policy)
    if format == "albumentations":
        return to_albumentations(policy)
    return policy
