"""Request limits: body caps (413 before the body is read), strict schemas against mass
assignment, bounds on numbers, per-user quotas, CORS off by default, single-user loopback."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from fastapi.testclient import TestClient
from security_support import MAX_UPLOAD, Accounts, Owned

from service.app import create_app
from service.settings import Settings

SMALL = {"strategy": "randaugment", "n_trials": 1, "recipe": {"epochs": 1}}


class CountingBody:
    """A chunked request body that records how many bytes the server pulled from it."""

    def __init__(self, chunks: int, chunk_size: int = 64 * 1024, head: bytes = b"") -> None:
        self.chunks = chunks
        self.chunk_size = chunk_size
        self.head = head
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.chunks):
            self.sent += self.chunk_size
            chunk = self.head + b"x" * (self.chunk_size - len(self.head)) if i == 0 else None
            yield chunk or b"x" * self.chunk_size


# The start of a well-formed multipart body: a file part that never ends.
MULTIPART_HEAD = (
    b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)


def test_declared_oversized_upload_is_refused_unread(api: TestClient, accounts: Accounts) -> None:
    body = CountingBody(chunks=64)  # 4 MiB against a 256 KiB cap
    headers = {**accounts.alice, "Content-Length": str(64 * 64 * 1024),
               "Content-Type": "multipart/form-data; boundary=b"}  # fmt: skip
    response = api.post("/api/v1/datasets/upload", content=body, headers=headers)
    assert response.status_code == 413 and str(MAX_UPLOAD) in response.json()["detail"]
    assert body.sent <= 64 * 1024  # at most the chunk the client had in flight


def _run_in_fresh_loop(
    app: object, path: str, headers: dict[str, str], body: CountingBody, http_version: str = "1.1"
) -> int:
    """Run `_stream_post` on its own thread: an earlier test (Playwright's sync API) may leave
    an event loop marked as running on the main thread, where `anyio.run` would refuse."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, _stream_post, app, path, headers, body, http_version).result()


async def _stream_post(
    app: object, path: str, headers: dict[str, str], body: CountingBody, http_version: str
) -> int:
    """POST ``body`` chunk by chunk straight into the ASGI app; return the status code.

    Over HTTP/1.1 the body is framed as uvicorn hands it on (``Transfer-Encoding: chunked``);
    over HTTP/2 a body may stream with no framing header at all. (The test client reads a
    whole body before calling the app, so it cannot show when the server stops reading.)
    """
    if http_version.startswith("1."):
        headers = {**headers, "transfer-encoding": "chunked"}
    chunks = iter(body)
    status = 0

    async def receive() -> dict[str, object]:
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, object]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])  # type: ignore[call-overload]

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": http_version, "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await app(scope, receive, send)  # type: ignore[operator]
    return status


def test_chunked_oversized_upload_is_cut_off_at_the_cap(
    api: TestClient, accounts: Accounts
) -> None:
    body = CountingBody(chunks=64, head=MULTIPART_HEAD)  # 4 MiB, no Content-Length
    headers = {**accounts.alice, "content-type": "multipart/form-data; boundary=b"}
    status = _run_in_fresh_loop(api.app, "/api/v1/datasets/upload", headers, body)
    assert status == 413
    assert MAX_UPLOAD < body.sent <= MAX_UPLOAD + body.chunk_size
    data_dir = api.app.state.runtime.settings.data_dir  # type: ignore[attr-defined]
    assert list((data_dir / "uploads").iterdir()) == []


@pytest.mark.parametrize("http_version", ["1.1", "2"])
def test_oversized_json_bodies_are_cut_off(
    api: TestClient, accounts: Accounts, http_version: str
) -> None:
    body = CountingBody(chunks=64)
    headers = {**accounts.alice, "content-type": "application/json"}
    status = _run_in_fresh_loop(api.app, "/api/v1/searches", headers, body, http_version)
    assert status == 413 and body.sent <= 1024 * 1024 + body.chunk_size


def test_a_body_under_the_cap_streams_through(api: TestClient, accounts: Accounts) -> None:
    body = CountingBody(chunks=2)
    headers = {**accounts.alice, "content-type": "application/json"}
    status = _run_in_fresh_loop(api.app, "/api/v1/searches", headers, body)
    assert status == 422 and body.sent == 2 * body.chunk_size  # read in full, then invalid


def test_an_unauthenticated_upload_is_refused_before_its_body(api: TestClient) -> None:
    body = CountingBody(chunks=4)
    headers = {"content-type": "multipart/form-data; boundary=b"}
    status = _run_in_fresh_loop(api.app, "/api/v1/datasets/upload", headers, body)
    assert status == 401 and body.sent == 0


@pytest.mark.parametrize("field", ["owner_id", "state", "best_value", "accuracy", "id"])
def test_mass_assignment_on_searches_is_refused(
    api: TestClient, accounts: Accounts, owned: Owned, field: str
) -> None:
    body = {"dataset_id": owned.dataset_id, "spec": SMALL, field: 1}
    response = api.post("/api/v1/searches", json=body, headers=accounts.alice)
    assert response.status_code == 422 and field in response.text
    nested = {"dataset_id": owned.dataset_id, "spec": {**SMALL, field: 1}}
    response = api.post("/api/v1/searches", json=nested, headers=accounts.alice)
    assert response.status_code == 422 and field in response.text


@pytest.mark.parametrize("field", ["owner_id", "state", "num_images", "content_hash"])
def test_mass_assignment_on_datasets_is_refused(
    api: TestClient, accounts: Accounts, field: str
) -> None:
    body = {"source": "digits", field: 1}
    response = api.post("/api/v1/datasets", json=body, headers=accounts.alice)
    assert response.status_code == 422 and field in response.text


def test_dashboard_launch_refuses_mass_assignment(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    body = {"dataset_id": owned.dataset_id, "spec": SMALL, "owner_id": 2}
    response = api.post("/launch", json=body, headers=accounts.alice)
    assert response.status_code == 422 and "owner_id" in response.text


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"n_trials": 51}, "n_trials"),
        ({"n_trials": 0}, "n_trials"),
        ({"recipe": {"epochs": 21}}, "epochs"),
        ({"recipe": {"epochs": 1, "batch_size": 10**9}}, "batch_size"),
        ({"recipe": {"epochs": 1, "lr": 1e9}}, "lr"),
        ({"parallelism": 10**6}, "parallelism"),
        ({"priority": 10**6}, "priority"),
        ({"seed": -1}, "seed"),
        ({"num_sub_policies": 10**4}, "num_sub_policies"),
    ],
)
def test_numbers_are_bounded(
    api: TestClient, accounts: Accounts, owned: Owned, spec: dict[str, object], needle: str
) -> None:
    body = {"dataset_id": owned.dataset_id, "spec": {**SMALL, **spec}}
    response = api.post("/api/v1/searches", json=body, headers=accounts.alice)
    assert response.status_code == 422 and needle in response.text


@pytest.mark.parametrize(
    "params", [{"limit": 101}, {"limit": 0}, {"offset": -1}, {"offset": 2**40}, {"limit": "x"}]
)
def test_page_parameters_are_bounded(
    api: TestClient, accounts: Accounts, params: dict[str, object]
) -> None:
    response = api.get("/api/v1/searches", params=params, headers=accounts.alice)
    assert response.status_code == 422


def test_dataset_numbers_are_bounded(api: TestClient, accounts: Accounts) -> None:
    for size in (4, 4096):
        body = {"source": "digits", "image_size": size}
        assert api.post("/api/v1/datasets", json=body, headers=accounts.alice).status_code == 422


def test_concurrent_search_quota_is_per_user(
    api: TestClient, accounts: Accounts, owned: Owned
) -> None:
    body = {"dataset_id": owned.dataset_id, "spec": SMALL}
    for _ in range(2):
        assert api.post("/api/v1/searches", json=body, headers=accounts.alice).status_code == 201
    third = api.post("/api/v1/searches", json=body, headers=accounts.alice)
    assert third.status_code == 429 and "limit is 2" in third.json()["detail"]
    bob_data = api.post("/api/v1/datasets", json={"source": "digits"}, headers=accounts.bob)
    bob_body = {"dataset_id": bob_data.json()["id"], "spec": SMALL}
    assert api.post("/api/v1/searches", json=bob_body, headers=accounts.bob).status_code == 201


def test_cors_is_off_by_default(api: TestClient, accounts: Accounts) -> None:
    preflight = api.options(
        "/api/v1/searches",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    plain = api.get(
        "/api/v1/searches", headers={**accounts.alice, "Origin": "https://elsewhere.example"}
    )
    assert "access-control-allow-origin" not in plain.headers


def test_cors_allow_list(secure_settings: Settings) -> None:
    allowed = secure_settings.model_copy(update={"cors_origins": ["https://ui.example"]})
    with TestClient(create_app(allowed, reconcile=False)) as client:
        ok = client.options(
            "/api/v1/searches",
            headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        other = client.options(
            "/api/v1/searches",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers
    with pytest.raises(ValueError, match="'\\*' is refused"):
        Settings(data_dir=secure_settings.data_dir, cors_origins=["*"])


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_single_user_mode_refuses_non_loopback_addresses(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        Settings(single_user=True, host=host)


def test_single_user_mode_is_refused_in_production() -> None:
    with pytest.raises(ValueError, match="single-user"):
        Settings(single_user=True, environment="production", database_url="postgresql://x/y")


def test_serve_refuses_single_user_on_a_public_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    monkeypatch.setenv("AUGSEARCH_SINGLE_USER", "true")
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "loopback" in result.output


def test_trusted_hosts_refuse_a_rebinding_name(secure_settings: Settings) -> None:
    pinned = secure_settings.model_copy(update={"trusted_hosts": ["127.0.0.1", "localhost"]})
    with TestClient(create_app(pinned, reconcile=False), base_url="http://localhost") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize(
    ("http_version", "headers", "counted"),
    [
        ("1.1", [], False),  # a plain GET: no body by HTTP/1.1 framing
        ("1.1", [(b"content-length", b"10")], False),  # the server stops at the declared length
        ("1.1", [(b"transfer-encoding", b"chunked")], True),
        ("1.1", [(b"content-length", b"ten")], True),
        ("1.0", [], False),
        ("2", [], True),  # HTTP/2 may stream a body without either header
        ("2", [(b"content-length", b"10")], False),
        ("3", [(b"content-length", b"10")], True),  # not a protocol this cap knows
        (None, [], True),  # no version given: counted
        ("1.1", [(b"content-length", b"10"), (b"transfer-encoding", b"chunked")], True),
        ("1.1", [(b"transfer-encoding", b"chunked"), (b"content-length", b"10")], True),
        ("1.1", [(b"content-length", b"10"), (b"content-length", b"10")], True),
        ("1.1", [(b"content-length", b"-1")], True),
        ("1.1", [(b"content-length", b"+10")], True),
    ],
)
def test_only_bodies_of_unknown_length_are_counted(
    http_version: str | None, headers: list[tuple[bytes, bytes]], counted: bool
) -> None:
    from service.limits import BodySizeLimit

    seen: list[object] = []

    async def app(scope: object, receive: object, send: object) -> None:
        seen.append(receive)

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    scope: dict[str, object] = {"type": "http", "path": "/x", "headers": headers}
    if http_version is not None:
        scope["http_version"] = http_version
    with ThreadPoolExecutor(max_workers=1) as pool:  # a loop may run on this thread already
        pool.submit(anyio.run, BodySizeLimit(app, 100, {}), scope, receive, send).result()
    assert (seen[0] is not receive) is counted
