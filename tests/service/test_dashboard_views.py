"""The dashboard without a browser: SVG builders, analysis helpers and every page route.

Pages are served from service tables filled through the real code paths: the searches API, the
trial-summary sync fed with real Optuna ``FrozenTrial`` objects, and the policy/checkpoint
repositories the reconciler uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial

from service.app import create_app
from service.checkpoints import repository as checkpoints
from service.dashboard.analysis import ImportanceCache, op_frequencies, top_fraction
from service.dashboard.charts import Bar, TrialPoint, bar_chart, epoch_curves, trial_scatter
from service.dashboard.launch import domain_errors
from service.dashboard.svg import Scale, attrs_text, nice_ticks
from service.errors import InvalidInput
from service.policies import repository as policies
from service.runtime import Runtime
from service.searches import repository as searches
from service.searches.states import SearchState, move
from service.searches.sync import refresh_trials
from service.settings import Settings
from service.users.service import create_user_with_token

SPEC = {"strategy": "randaugment", "n_trials": 4, "recipe": {"epochs": 3}, "baselines": ["none"]}
POLICY = {"kind": "randaugment", "n": 2, "m": 0.5}
SUBPOLICY = {"kind": "subpolicies", "sub_policies": [
    [{"op": "Rotate", "p": 0.5, "magnitude": 0.4}, {"op": "Equalize", "p": 0.2}],
    [{"op": "Rotate", "p": 0.7, "magnitude": 0.8}]]}  # fmt: skip


def _data(svg: str, attr: str) -> list[str]:
    return re.findall(rf'{attr}="([^"]*)"', svg)


def test_svg_helpers() -> None:
    assert nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.31, 0.47, 4) == [0.35, 0.4, 0.45]
    with pytest.raises(ValueError, match="finite"):
        nice_ticks(0.0, float("nan"))
    assert Scale(0, 10, 100, 200)(5) == 150 and Scale(1, 1, 0, 10)(1) == 5
    text = attrs_text({"data_label": '<b>"x"</b>', "class_": "bar", "skip": None, "v": 0.1234567})
    assert text == 'data-label="&lt;b&gt;&quot;x&quot;&lt;/b&gt;" class="bar" v="0.123457"'


def test_integer_ticks_never_fractional() -> None:
    assert nice_ticks(1.0, 2.0) == [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]
    assert nice_ticks(1.0, 2.0, integer=True) == [1, 2]
    assert nice_ticks(1.0, 3.0, integer=True) == [1, 2, 3]
    assert nice_ticks(1.0, 9.0, integer=True) == [2, 4, 6, 8]
    assert all(t == int(t) for t in nice_ticks(0.5, 37.5, 7, integer=True))
    assert nice_ticks(0.2, 0.7, integer=True) == []  # no whole number in range
    assert nice_ticks(3.0, 3.0, integer=True) == [3.0]


def test_epoch_axis_of_two_epoch_trials_has_whole_ticks() -> None:
    svg = epoch_curves([TrialPoint(0, "search", "COMPLETE", 0.6, (0.5, 0.6))])
    labels = re.findall(r'<text [^>]*text-anchor="middle"[^>]*>([^<]*)</text>', svg)
    assert labels[:2] == ["1", "2"] and "epoch" in labels


def _points() -> list[TrialPoint]:
    return [
        TrialPoint(0, "baseline", "COMPLETE", 0.50, (0.4, 0.5), "none"),
        TrialPoint(1, "search", "COMPLETE", 0.60, (0.5, 0.6)),
        TrialPoint(2, "search", "PRUNED", None, (0.2,)),
        TrialPoint(3, "search", "COMPLETE", 0.55, (0.5, 0.55)),
        TrialPoint(4, "search", "RUNNING", None, ()),
        TrialPoint(5, "search", "COMPLETE", 0.70, (0.6, 0.7)),
    ]


def test_trial_scatter_holds_each_point_best_line_and_baselines() -> None:
    svg = trial_scatter(_points(), {"none": 0.5, "randaugment-2-9": None})
    assert svg.startswith("<svg") and 'data-chart="trials"' in svg
    assert _data(svg, "data-trial") == ["0", "1", "2", "3", "5"]
    assert [float(v) for v in _data(svg, "data-value")][1:] == [0.5, 0.6, 0.2, 0.55, 0.7]
    assert _data(svg, "data-values") == ["0.6,0.6,0.7"]  # best so far of search trials
    assert _data(svg, "data-baseline") == ["none", "none"]  # the line and the baseline's point
    assert "No finished trial yet" in trial_scatter([], {})


def test_epoch_curves_mark_pruned_trials() -> None:
    svg = epoch_curves(_points())
    assert _data(svg, "data-epochs") == ["0.4,0.5", "0.5,0.6", "0.2", "0.5,0.55", "0.6,0.7"]
    assert svg.count('class="pruned-mark"') == 1 and 'data-epoch="1"' in svg
    assert "No epoch reported yet" in epoch_curves([])


def test_epoch_curves_skip_epochs_that_did_not_validate() -> None:
    # A proxy validating every 2nd epoch: the curve joins epochs 2 and 4, at their places.
    sparse = TrialPoint(0, "search", "PRUNED", None, (None, 0.4, None, 0.5))
    svg = epoch_curves([sparse, TrialPoint(1, "search", "COMPLETE", 0.6, (0.5, 0.6))])
    assert _data(svg, "data-epochs") == [",0.4,,0.5", "0.5,0.6"]
    (curve,) = re.findall(r'points="([^"]+)"[^>]*data-trial="0"', svg) or re.findall(
        r'data-trial="0"[^>]*points="([^"]+)"', svg
    )
    assert len(curve.split()) == 2
    assert sparse.shown_value == 0.5 and 'data-epoch="4"' in svg


def test_bar_chart_escapes_labels_and_keeps_data() -> None:
    svg = bar_chart("op-frequency", [Bar("<Rotate>", 3, {"op": "Rotate"}), Bar("B", 1)], "t")
    assert "<Rotate>" not in svg and "&lt;Rotate&gt;" in svg
    assert _data(svg, "data-op") == ["Rotate"] and _data(svg, "data-value") == ["3", "1"]
    assert "Nothing to show yet" in bar_chart("x", [], "t")


def test_op_frequencies_and_top_fraction() -> None:
    counts = op_frequencies([SUBPOLICY, SUBPOLICY])
    assert [(c.op, c.count) for c in counts] == [("Rotate", 4), ("Equalize", 2)]
    assert counts[0].mean_magnitude == pytest.approx(0.6)
    rand = op_frequencies([POLICY])
    assert len(rand) == 14 and all(c.count == 1 and c.mean_magnitude == 0.5 for c in rand)
    assert op_frequencies([{"kind": "none"}]) == []
    assert [top_fraction(n) for n in (0, 2, 10, 40)] == [0, 2, 3, 10]
    with pytest.raises(ValueError, match="fraction"):
        top_fraction(5, 0.0)


def test_domain_errors_use_pydantic_locations() -> None:
    from pydantic import ValidationError

    from search.spec import SearchSpec

    with pytest.raises(ValidationError) as caught:
        SearchSpec.model_validate({"dataset": {"source": "digits"}, "n_trials": 0})
    exc = InvalidInput("invalid search spec")
    exc.__cause__ = caught.value
    assert list(domain_errors(exc)) == ["spec.n_trials"]
    assert domain_errors(InvalidInput("spec.recipe.epochs must be at most 20")) == {
        "spec.recipe.epochs": "spec.recipe.epochs must be at most 20"}  # fmt: skip
    assert domain_errors(InvalidInput("quota")) == {"_form": "quota"}


def _trial(
    number: int, role: str, value: float | None, params: dict[str, int] | None = None, **attrs: Any
) -> Any:
    """A real Optuna trial as a worker leaves it (PRUNED when ``value`` is None)."""
    params = params or {}
    epochs = [0.3, value] if value is not None else [0.2]
    trial = create_trial(
        state=TrialState.COMPLETE if value is not None else TrialState.PRUNED,
        value=value,
        params=params,
        distributions={k: IntDistribution(0, 10) for k in params},
        user_attrs={"role": role, "epochs": epochs, "worker": "host:1", "duration_s": 2.5, **attrs},
        intermediate_values=dict(enumerate(epochs)),
    )
    trial.number = number
    return trial


def _search_with_trials(client: TestClient, runtime: Runtime, dataset_id: int) -> int:
    created = client.post("/api/v1/searches", json={"dataset_id": dataset_id, "spec": SPEC})
    assert created.status_code == 201, created.text
    sid = int(created.json()["id"])
    trials = [
        _trial(0, "baseline", 0.41, baseline="none", policy={"kind": "none"}),
        _trial(1, "search", 0.52, {"n": 2, "m": 5}, policy=POLICY),
        _trial(2, "search", None, {"n": 3, "m": 9}, policy={**POLICY, "n": 3, "m": 0.9}),
        _trial(3, "search", 0.61, {"n": 1, "m": 4}, policy=SUBPOLICY),
    ]
    with runtime.transaction() as session:
        search = searches.get_any(session, sid)
        assert search is not None
        move(search, SearchState.RUNNING)
        search.progress = {"n_trials": 4, "complete": 2, "baselines": {"none": 0.41},
                           "best_search_value": 0.61, "best_baseline_value": 0.41}  # fmt: skip
        refresh_trials(session, sid, trials)
    return sid


@pytest.fixture
def search_id(client: TestClient, runtime: Runtime, digits: dict[str, Any]) -> int:
    """A running search with a baseline, two complete search trials and a pruned one."""
    return _search_with_trials(client, runtime, int(digits["id"]))


def test_searches_list_and_filters(client: TestClient, search_id: int) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'data-search-id="{search_id}"' in page.text and 'data-state="running"' in page.text
    assert 'style="width: 50.0%"' in page.text and "0.6100" in page.text and "0.4100" in page.text
    assert "data-search-id" not in client.get("/", params={"state": "completed"}).text
    assert f'data-search-id="{search_id}"' in client.get("/?state=&dataset_id=").text
    bad = client.get("/", params={"state": "bogus"})
    assert bad.status_code == 422 and "unknown state" in bad.text


def test_search_page_renders_charts_and_table(client: TestClient, search_id: int) -> None:
    page = client.get(f"/searches/{search_id}")
    assert page.status_code == 200, page.text
    html = page.text
    scatter = html[
        html.index('data-chart="trials"') : html.index("</svg>", html.index('data-chart="trials"'))
    ]
    assert _data(scatter, "data-trial") == ["0", "1", "2", "3"]
    assert html.count('class="pruned-mark"') == 1
    assert 'data-op="Rotate"' in html  # the top trials' ops
    assert html.count("<tr data-trial=") == 4
    assert "RandAugment n=2 m=0.5" in html and "2 sub-policies: Rotate, Equalize" in html
    assert "needs at least 4 complete search trials" in html or "no study" in html
    assert client.get("/searches/999").status_code == 404
    assert "search 999 not found" in client.get("/searches/999").text


def test_policy_page_and_preview(client: TestClient, search_id: int) -> None:
    page = client.get(f"/searches/{search_id}/policy")
    assert page.status_code == 200, page.text
    assert "Provisional" in page.text and "sub-policies" in page.text
    assert 'id="export-json"' in page.text and 'id="export-torchvision"' in page.text
    # sub-policies have no timm config string: the timm export is code over timm's ops
    assert 'id="export-timm"' in page.text and "from timm.data" in page.text
    first = client.get(f"/searches/{search_id}/policy/preview.png")
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    assert client.get(f"/searches/{search_id}/policy/preview.png").content == first.content
    other = client.get(f"/searches/{search_id}/policy/preview.png", params={"seed": 7})
    assert other.content != first.content


def test_completed_search_shows_result(
    client: TestClient, runtime: Runtime, search_id: int, tmp_path: Path
) -> None:
    weights = tmp_path / "final.safetensors"
    weights.write_bytes(b"not read by the page")
    with runtime.transaction() as session:
        search = searches.get_any(session, search_id)
        assert search is not None
        refresh_trials(session, search_id, [_trial(4, "final", 0.66, policy=SUBPOLICY)])
        policies.upsert(session, search_id, search.dataset_id, SUBPOLICY, 0.66)
        checkpoints.upsert(session, search_id, "art-1", str(weights), "ab" * 32,
                           {"arch": "resnet8", "accuracy": 0.66})  # fmt: skip
        move(search, SearchState.COMPLETED)
    html = client.get(f"/searches/{search_id}").text
    assert f'href="/api/v1/searches/{search_id}/checkpoint"' in html
    assert 'data-value="0.66"' in html and 'data-baseline="none"' in html
    assert "resnet8" in html
    dataset = client.get(f"/datasets/{search.dataset_id}").text
    assert f'href="/searches/{search_id}/policy"' in dataset
    assert "Final policy" in client.get(f"/searches/{search_id}/policy").text


def test_dataset_workers_and_launch_pages(
    client: TestClient, search_id: int, digits: dict[str, Any]
) -> None:
    page = client.get(f"/datasets/{digits['id']}").text
    assert (
        page.count('class="bar"') == 10 and f"/api/v1/datasets/{digits['id']}/samples.png" in page
    )
    assert f'data-search-id="{search_id}"' in page
    assert client.get("/datasets/999").status_code == 404
    assert "digits" in client.get("/datasets").text
    assert "No worker alive" in client.get("/workers").text
    form = client.get(f"/launch?dataset_id={digits['id']}").text
    assert 'name="spec.recipe.epochs"' in form and "autoaugment" in form
    assert client.get("/static/dashboard.js").status_code == 200


def test_launch_endpoint_validates_like_the_api(client: TestClient, digits: dict[str, Any]) -> None:
    def launch(body: dict[str, Any]) -> Any:
        return client.post("/launch", json=body)

    bad = launch({"dataset_id": digits["id"], "spec": {**SPEC, "n_trials": 0, "sampler": "x"}})
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"spec.n_trials", "spec.sampler"}
    limit = launch({"dataset_id": digits["id"], "spec": {**SPEC, "n_trials": 51}})
    assert limit.json()["errors"] == {"spec.n_trials": "spec.n_trials must be at most 50"}
    assert set(launch({"dataset_id": 0}).json()["errors"]) == {"dataset_id"}
    assert launch({"dataset_id": 999, "spec": SPEC}).status_code == 404
    # A cross-site HTML form cannot send JSON: other content types are refused.
    plain = client.post("/launch", content=b"{}", headers={"content-type": "text/plain"})
    assert plain.status_code == 422
    ok = launch({"dataset_id": digits["id"], "name": "from the form", "spec": SPEC})
    assert ok.status_code == 201
    shown = client.get(f"/api/v1/searches/{ok.json()['id']}").json()
    assert shown["name"] == "from the form" and shown["spec"]["n_trials"] == 4


def test_importance_needs_enough_trials_and_is_cached(runtime: Runtime) -> None:
    cache = ImportanceCache()
    assert "no study" in (cache.get(runtime.storage, 77, 0).reason or "")
    study = optuna.create_study(
        study_name="search-77", storage=runtime.storage, direction="maximize"
    )
    for i in range(3):
        study.add_trial(_trial(i, "search", 0.5 + i / 10, {"n": i, "m": 2 * i}))
    assert "needs at least 4" in (cache.get(runtime.storage, 77, 3).reason or "")
    for i in range(3, 8):
        study.add_trial(_trial(i, "search", 0.5 + (i % 3) / 10, {"n": i % 3, "m": i}))
    study.add_trial(_trial(8, "final", 0.99))
    found = cache.get(runtime.storage, 77, 8)
    assert set(found.values) == {"n", "m"} and found.values["n"] > found.values["m"]
    assert cache.get(runtime.storage, 77, 8) is found


def test_dashboard_signs_in_with_a_token_cookie(settings: Settings) -> None:
    locked = settings.model_copy(update={"single_user": False})
    with TestClient(create_app(locked, reconcile=False)) as anonymous:
        denied = anonymous.get("/")
        assert denied.status_code == 401 and "token" in denied.text
        with anonymous.app.state.runtime.transaction() as session:  # type: ignore[attr-defined]
            _, token = create_user_with_token(session, "ada")
        anonymous.cookies.set("augsearch_token", token)
        assert anonymous.get("/").status_code == 200
        anonymous.cookies.set("augsearch_token", "aug_wrong")
        assert anonymous.get("/").status_code == 401


def test_sign_out_link_only_for_a_token_cookie(settings: Settings, client: TestClient) -> None:
    assert 'id="signout"' not in client.get("/").text  # single-user mode: nobody to sign out
    locked = settings.model_copy(update={"single_user": False})
    with TestClient(create_app(locked, reconcile=False)) as http:
        with http.app.state.runtime.transaction() as session:  # type: ignore[attr-defined]
            _, token = create_user_with_token(session, "grace")
        http.cookies.set("augsearch_token", token)
        page = http.get("/workers").text
        assert '<form id="signout" class="signout" method="post" action="/signout">' in page
        # The form posts from the dashboard's own origin, which /signout accepts.
        out = http.post("/signout", headers={"Origin": "http://testserver"}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert 'augsearch_token=""' in out.headers["set-cookie"]
        cross = http.post("/signout", headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403


def test_preset_pages_preview_on_the_viewers_dataset(
    client: TestClient, digits: dict[str, Any]
) -> None:
    listing = client.get("/presets").text
    assert 'data-preset="autoaugment-svhn"' in listing and 'href="/presets/none"' in listing
    page = client.get("/presets/autoaugment-svhn", params={"dataset": digits["id"]})
    assert page.status_code == 200, page.text
    assert page.text.count("<li>") >= 5  # the published SVHN table has many sub-policies
    base = f"/presets/autoaugment-svhn/preview.png?dataset={digits['id']}"
    assert f'src="{base}&amp;seed=0" data-base="{base}"' in page.text
    assert f'<option value="{digits["id"]}" selected>' in page.text
    first = client.get(base)
    assert first.status_code == 200 and first.content.startswith(b"\x89PNG")
    assert client.get(base, params={"seed": 3}).content != first.content
    plain = client.get(f"/presets/none/preview.png?dataset={digits['id']}")
    assert plain.status_code == 200 and plain.content != first.content
    assert client.get("/presets/autoaugment-svhn").status_code == 200  # newest dataset
    assert f'href="/presets?dataset={digits["id"]}"' in client.get(f"/datasets/{digits['id']}").text
    missing = client.get("/presets/bogus")
    assert missing.status_code == 404 and "preset &#39;bogus&#39; not found" in missing.text
    assert client.get("/presets/bogus/preview.png?dataset=1").status_code == 404
    assert client.get("/presets/none/preview.png?dataset=999").status_code == 404
    assert client.get("/presets/none/preview.png").status_code == 422


def test_optuna_dashboard_runs_beside_the_app_and_is_linked(settings: Settings) -> None:
    import socket
    import time

    import httpx

    from service.dashboard import mount_optuna_dashboard

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    app = create_app(settings, reconcile=False)
    url = mount_optuna_dashboard(app, settings, port=port)
    assert url == f"http://127.0.0.1:{port}/dashboard/"
    with TestClient(app) as client:
        assert f'id="optuna-dashboard-link" href="{url}"' in client.get("/workers").text
        deadline = time.monotonic() + 30
        while True:
            try:
                meta = httpx.get(f"http://127.0.0.1:{port}/api/meta", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "optuna-dashboard did not start"
                time.sleep(0.3)
        assert meta.status_code == 200
    with pytest.raises(httpx.TransportError):  # stopped with the app
        httpx.get(f"http://127.0.0.1:{port}/api/meta", timeout=2)
