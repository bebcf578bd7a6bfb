"""The final pick through the real code paths: a worker runs a search whose final trainings
reverse the proxy's ranking; the API's typed ``final_pick``, the served policy, and the search
page's final-pick table, rank agreement and warning follow from it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient

from search.objective import FixedLengthTrial
from search.worker import Worker
from service.reconciler import Reconciler
from service.runtime import Runtime
from service.searches.schemas import SearchRead
from service.settings import Settings

SPEC = {"strategy": "randaugment", "n_trials": 3, "baselines": ["none"], "sampler": "random",
        "pruner": "none", "parallelism": 1, "recipe": {"epochs": 2},
        "final_pick": {"candidates": 2, "presets": 1}}  # fmt: skip
PROXY_TRIALS = 1 + 3  # the baseline and the search budget


def reversing_train_fn() -> Callable[[optuna.Trial, str, Callable[[], None]], float]:
    """Proxy values as `FixedLengthTrial` gives them; finals in the reverse order."""
    proxy = FixedLengthTrial(0.0, 1)

    def train(trial: optuna.Trial, role: str, check_stop: Callable[[], None]) -> float:
        if role == "final":
            return 1.0 - float(trial.user_attrs["proxy_value"])
        return proxy(trial, role, check_stop)

    return train


def _worker(settings: Settings, **kwargs: Any) -> Worker:
    return Worker(settings.optuna_storage_url, "cpu", settings.artifact_store_location,
                  name="pick", heartbeat_interval=1, poll_interval=0.05,
                  train_fn=reversing_train_fn(), **kwargs)  # fmt: skip


@pytest.fixture
def finished(
    client: TestClient, runtime: Runtime, settings: Settings, digits: dict[str, Any]
) -> dict[str, Any]:
    """A search run to the end, with its state read while one final was done."""
    body = {"dataset_id": digits["id"], "spec": SPEC}
    sid = client.post("/api/v1/searches", json=body).json()["id"]
    reconciler = Reconciler(runtime)
    try:
        reconciler.run_once()
        _worker(settings, max_trials=PROXY_TRIALS + 1).run(max_idle=0)
        reconciler.run_once()
        midway = client.get(f"/api/v1/searches/{sid}").json()
        policy_midway = client.get(f"/api/v1/searches/{sid}/policy").json()
        _worker(settings).run(max_idle=0)
        reconciler.run_once()
    finally:
        reconciler.leader.release()
    search = client.get(f"/api/v1/searches/{sid}").json()
    assert search["state"] == "completed", search
    return {"search": search, "midway": midway, "policy_midway": policy_midway}


def test_the_api_shows_the_final_pick_while_it_runs(finished: dict[str, Any]) -> None:
    midway = finished["midway"]
    assert midway["state"] == "finalizing"
    pick = midway["final_pick"]
    assert pick["size"] == 3 and pick["done"] == 1 and pick["winner"] is None
    assert [c["state"] for c in pick["contenders"]] == ["COMPLETE", "WAITING", "WAITING"]
    assert midway["progress"]["finals_done"] == 1 and midway["progress"]["finals"] == 3
    assert midway["progress"]["budget_used"] == 3 and midway["progress"]["eta_s"] is not None
    # The preset's final ran while the search was open, right after the baseline (trial 0)
    # and before the search trials.
    first = pick["contenders"][0]
    assert first["label"] == "none" and first["final_trial"] == 1
    # While the pick runs, a final's value outranks every proxy value.
    policy = finished["policy_midway"]
    assert policy["provisional"] is True and policy["accuracy"] == first["final_value"]


def test_the_api_exposes_the_final_pick_typed(client: TestClient, finished: dict[str, Any]) -> None:
    search = finished["search"]
    pick = SearchRead.model_validate(search).final_pick
    assert pick is not None and pick.size == pick.done == 3
    labels = [c.label for c in pick.contenders]
    # The preset first (picked as soon as the baselines were over), then the searched ones.
    assert labels[0] == "none" and all(label.startswith("search #") for label in labels[1:])
    proxies = [c.proxy_value or 0.0 for c in pick.contenders[1:]]
    assert proxies == sorted(proxies, reverse=True)  # searched policies by proxy value
    for c in pick.contenders:
        assert c.final_value == pytest.approx(1.0 - (c.proxy_value or 0.0))
        assert c.final_trial is not None and c.trials == [c.final_trial]
    worst_proxy = min(pick.contenders, key=lambda c: c.proxy_value or 0.0)
    best_proxy = max(pick.contenders, key=lambda c: c.proxy_value or 0.0)
    assert pick.winner == worst_proxy.label and pick.proxy_winner == best_proxy.label
    assert [c.winner for c in pick.contenders].count(True) == 1 and worst_proxy.winner
    assert pick.kendall_tau == pytest.approx(-1.0) and pick.proxy_reliable is False
    policy = client.get(f"/api/v1/searches/{search['id']}/policy").json()
    assert policy["provisional"] is False
    assert policy["accuracy"] == pytest.approx(worst_proxy.final_value)
    assert search["best_value"] == pytest.approx(worst_proxy.final_value)
    assert search["progress"]["eta_s"] is None and search["progress"]["finals_done"] == 3


def test_the_search_page_shows_the_pick_the_winner_and_the_warning(
    client: TestClient, finished: dict[str, Any]
) -> None:
    search = finished["search"]
    pick = search["final_pick"]
    html = client.get(f"/searches/{search['id']}").text
    table = html[
        html.index('id="final-pick"') : html.index("</table>", html.index('id="final-pick"'))
    ]
    rows = re.findall(r'<tr data-contender="([^"]*)" class="([^"]*)"', table)
    assert [label for label, _ in rows] == [c["label"] for c in pick["contenders"]]
    assert [label for label, cls in rows if cls == "winner"] == [pick["winner"]]
    assert table.count("&#9733; served") == 1 and table.count("best proxy") == 1
    assert 'data-tau="-1.0"' in html and "-1.00" in html
    warning = "ranking did not hold at final fidelity; the served policy won the final comparison"
    assert warning in html
    # Each final trial is listed and plotted under its contender.
    for c in pick["contenders"]:
        assert f"final: {c['label']}" in html
        assert f'data-contender="{c["label"]}"' in html.split('data-chart="trials"')[1]
    assert "final pick 3/3 trainings" in html


def test_a_preset_at_1_ends_the_search_and_the_page_says_why(
    client: TestClient, runtime: Runtime, settings: Settings, digits: dict[str, Any]
) -> None:
    proxy = FixedLengthTrial(0.0, 1)

    def perfect_preset(trial: optuna.Trial, role: str, check_stop: Callable[[], None]) -> float:
        if role == "final" and trial.user_attrs.get("baseline"):
            return 1.0
        return proxy(trial, role, check_stop)

    sid = client.post("/api/v1/searches", json={"dataset_id": digits["id"], "spec": SPEC}).json()[
        "id"
    ]
    reconciler = Reconciler(runtime)
    try:
        reconciler.run_once()
        # The baseline, then the preset's final (enqueued once the baseline is over).
        Worker(settings.optuna_storage_url, "cpu", settings.artifact_store_location,
               name="sat", heartbeat_interval=1, poll_interval=0.05, max_trials=2,
               train_fn=perfect_preset).run(max_idle=0)  # fmt: skip
        reconciler.run_once()
    finally:
        reconciler.leader.release()
    search = client.get(f"/api/v1/searches/{sid}").json()
    assert search["state"] == "completed", search
    pick = SearchRead.model_validate(search).final_pick
    assert pick is not None and pick.winner == "none" and pick.saturated is True
    # The baseline, then the preset's final: the search ends before any search trial.
    assert pick.ended_early == {"search_trials": 0, "n_trials": 3}
    assert pick.decided_by == "only contender" and pick.size == 1
    assert search["progress"]["budget_used"] == 0
    html = client.get(f"/searches/{sid}").text
    assert 'id="saturated-warning"' in html
    assert "the search ended after 0 of 3 search trials" in html
    assert "Decided by: only contender." in html
