"""Every dashboard page in chromium against a server holding a finished and a running search."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.browser

# A test run takes every screenshot (a page that cannot render fails) into a temporary folder;
# the README's come from a finished demo search (tests/browser/demo_screenshots.py).
SCREENSHOTS = Path(tempfile.gettempdir()) / "augsearch-screenshots"
# The ``live_server`` fixture (tests/browser/conftest.py): url, settings, dataset_id,
# finished_id, running_id, worker_name.
LiveServer = Any


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


def _trials(server: LiveServer, search_id: int) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/api/v1/searches/{search_id}/trials", params={"limit": 100})
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_searches_list_shows_both_searches_and_updates_live(
    page: Any, live_server: LiveServer
) -> None:
    page.goto(live_server.url + "/")
    finished = page.locator(f'tr[data-search-id="{live_server.finished_id}"]')
    running = page.locator(f'tr[data-search-id="{live_server.running_id}"]')
    assert finished.get_attribute("data-state") == "completed"
    assert running.get_attribute("data-state") == "running"
    assert finished.locator('[data-field="progress"]').get_attribute("style") == "width: 100.0%"
    assert finished.locator('[data-field="best"]').inner_text() != "-"
    assert finished.locator('[data-field="best_baseline"]').inner_text() != "-"
    # The list polls the JSON API: wait for one refresh to land.
    page.wait_for_function("document.querySelector('#searches').dataset.updated !== undefined")
    assert "updated" in page.locator("#live-status").inner_text()
    _shot(page, "searches")
    page.select_option('select[name="state"]', "running")
    page.click("form.filters button")
    page.wait_for_url("**/?state=running*")
    assert page.locator("tr[data-search-id]").count() == 1


def test_search_page_charts_hold_every_trial(page: Any, live_server: LiveServer) -> None:
    sid = live_server.finished_id
    page.goto(f"{live_server.url}/searches/{sid}")
    trials = _trials(live_server, sid)
    complete = {t["number"]: t["value"] for t in trials if t["state"] == "COMPLETE"}
    points = page.locator('svg[data-chart="trials"] circle.point')
    assert points.count() == len(complete)
    for i in range(points.count()):
        number = int(points.nth(i).get_attribute("data-trial"))
        assert float(points.nth(i).get_attribute("data-value")) == pytest.approx(
            complete[number], rel=1e-5
        )
    baselines = page.locator('svg[data-chart="trials"] line.baseline')
    assert baselines.evaluate_all("els => els.map(e => e.dataset.baseline)") == ["none"]
    assert page.locator('svg[data-chart="trials"] polyline.best-so-far').count() == 1
    curves = page.locator('svg[data-chart="epochs"] polyline.curve')
    assert curves.count() == sum(1 for t in trials if t["epochs"])
    assert page.locator('svg[data-chart="op-frequency"] rect.bar').count() > 0
    assert page.locator("#trials tbody tr").count() == len(trials)
    # The final pick: one row per contender, the served one marked, its finals in the table.
    pick = httpx.get(f"{live_server.url}/api/v1/searches/{sid}").json()["final_pick"]
    rows = page.locator("#final-pick tr[data-contender]")
    assert rows.evaluate_all("els => els.map(e => e.dataset.contender)") == [
        c["label"] for c in pick["contenders"]
    ]
    assert page.locator("#final-pick tr.winner").get_attribute("data-contender") == pick["winner"]
    finals = [t for t in trials if t["role"] == "final"]
    assert page.locator("#trials td", has_text="final: ").count() == len(finals)
    _shot(page, "search")
    page.click("#trials thead th:nth-child(4)")  # sort by accuracy, descending on 2nd click
    page.click("#trials thead th:nth-child(4)")
    first = page.locator("#trials tbody tr").first.get_attribute("data-trial")
    assert int(first) == max(complete, key=lambda n: complete[n])
    assert page.locator("#checkpoint-download").get_attribute("href") == (
        f"/api/v1/searches/{sid}/checkpoint"
    )
    assert page.locator("#model-card dt").count() > 0


def test_running_search_page(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/searches/{live_server.running_id}")
    assert page.locator("h1 .state").inner_text() == "running"
    assert page.locator('svg[data-chart="trials"] circle.point').count() >= 2
    assert page.locator("#checkpoint-download").count() == 0


def test_policy_page_shows_images_and_copies_exports(page: Any, live_server: LiveServer) -> None:
    context = page.context
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto(f"{live_server.url}/searches/{live_server.finished_id}/policy")
    assert page.locator("#policy-describe li").count() >= 1
    preview = page.locator("#policy-preview")
    preview.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#policy-preview').complete")
    assert preview.evaluate("img => img.naturalWidth") > 0
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "policy")
    exported = json.loads(page.locator("#export-json").inner_text())
    api = httpx.get(f"{live_server.url}/api/v1/searches/{live_server.finished_id}/policy").json()
    assert exported == api["policy"]
    page.click('button[data-copy-target="export-json"]')
    page.wait_for_function("document.querySelector('[data-format=json] .copied').textContent")
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert json.loads(clipboard) == api["policy"]


def test_dataset_page(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/datasets/{live_server.dataset_id}")
    bars = page.locator('svg[data-chart="classes"] rect.bar')
    assert bars.count() == 10
    assert sum(int(float(v)) for v in bars.evaluate_all("els => els.map(e => e.dataset.value)")) > 0
    page.wait_for_function("document.querySelector('#dataset-samples').complete")
    assert page.locator("#dataset-samples").evaluate("img => img.naturalWidth") > 0
    assert page.locator("tr[data-search-id]").count() == 2
    assert page.locator("#best-policy a").get_attribute("href") == (
        f"/searches/{live_server.finished_id}/policy"
    )
    _shot(page, "dataset")


def test_workers_page_lists_the_live_worker(page: Any, live_server: LiveServer) -> None:
    page.goto(f"{live_server.url}/workers")
    row = page.locator(f'tr[data-worker="{live_server.worker_name}"]')
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "cpu" and int(cells[4]) >= 7
    _shot(page, "workers")


def test_launch_form_shows_errors_then_creates_a_search(
    page: Any, live_server: LiveServer, console: Any
) -> None:
    console.expected.append("status of 422")  # chromium logs the refused submission itself
    page.goto(f"{live_server.url}/launch?dataset_id={live_server.dataset_id}")
    page.fill('input[name="spec.n_trials"]', "0")
    page.fill('input[name="spec.recipe.epochs"]', "100000")
    page.click("#launch-submit")
    trials_error = page.locator('[data-error-for="spec.n_trials"]')
    trials_error.wait_for()
    assert "greater than or equal to 1" in trials_error.inner_text()
    assert "500" in page.locator('[data-error-for="spec.recipe.epochs"]').inner_text()
    assert page.locator('input[name="spec.n_trials"].invalid').count() == 1
    _shot(page, "launch-errors")
    page.fill('input[name="spec.n_trials"]', "2")
    page.fill('input[name="spec.recipe.epochs"]', "1")
    page.fill('input[name="name"]', "launched from the browser")
    page.click("#launch-submit")
    page.wait_for_url("**/searches/*")
    assert "launched from the browser" in page.locator("h1").inner_text()
    created = int(page.url.rsplit("/", 1)[1])
    shown = httpx.get(f"{live_server.url}/api/v1/searches/{created}").json()
    assert shown["spec"]["n_trials"] == 2 and shown["spec"]["recipe"]["epochs"] == 1
    httpx.post(f"{live_server.url}/api/v1/searches/{created}/cancel")


def test_preset_page_previews_a_preset_on_the_users_dataset(
    page: Any, live_server: LiveServer
) -> None:
    page.goto(f"{live_server.url}/datasets/{live_server.dataset_id}")
    page.click("#preset-preview-link")
    page.wait_for_url("**/presets?dataset=*")
    page.click('a[data-preset="autoaugment-svhn"]')
    page.wait_for_url(f"**/presets/autoaugment-svhn?dataset={live_server.dataset_id}")
    assert page.locator("#policy-describe li").count() >= 5
    assert page.locator("#preset-dataset-select").input_value() == str(live_server.dataset_id)
    preview = page.locator("#policy-preview")
    page.wait_for_function("document.querySelector('#policy-preview').complete")
    assert preview.evaluate("img => img.naturalWidth") > 0
    first = preview.get_attribute("src")
    _shot(page, "preset")
    page.click("#redraw")  # the base URL holds a query: the seed is added to it, not appended
    page.wait_for_function(
        "document.querySelector('#policy-preview').src.endsWith('seed=1')"
        " && document.querySelector('#policy-preview').complete"
    )
    assert preview.get_attribute("src") == first.replace("seed=0", "seed=1")
    assert preview.evaluate("img => img.naturalWidth") > 0


def test_sign_in_then_sign_out_from_the_navigation(
    page: Any, locked_server: tuple[str, str], console: Any
) -> None:
    url, token = locked_server
    console.expected.append("status of 401")  # chromium logs the signed-out page's answer
    page.goto(url + "/signin")
    assert page.locator("#signout").count() == 0
    page.fill('input[name="token"]', token)
    page.click("#signin-form button")
    page.wait_for_url(url + "/")
    assert page.locator("header.top #signout button").inner_text() == "Sign out"
    page.click("#signout button")  # a plain same-origin POST form, accepted by /signout
    page.wait_for_url("**/signin")
    assert not [c for c in page.context.cookies() if c["name"] == "augsearch_token"]
    answer = page.goto(url + "/")
    assert answer is not None and answer.status == 401
    assert page.locator("#signout").count() == 0
