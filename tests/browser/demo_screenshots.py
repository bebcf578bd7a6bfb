"""Take the README's screenshots (docs/screenshots/*.png) from a finished ``augsearch demo``.

The pictures show what a user sees after ``make run``: the demo search on digits finished,
its final pick, and its policy drawn on real images. Run the demo, wait until its search is
completed, then::

    .venv/bin/augsearch demo --port 8765 --data-dir /tmp/demo &
    .venv/bin/python tests/browser/demo_screenshots.py --url http://127.0.0.1:8765

Chromium is Debian's (``apt-get install chromium``), driven by Playwright as in the browser
tests. Not a test: pytest collects only ``test_*.py``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 900}


def _finished_search(url: str) -> dict[str, Any]:
    page = httpx.get(f"{url}/api/v1/searches", params={"state": "completed"}, timeout=30).json()
    if not page["items"]:
        raise SystemExit(f"no completed search at {url}: wait for the demo search to finish")
    search: dict[str, Any] = page["items"][0]
    return search


def _wait_image(page: Any, selector: str) -> None:
    page.locator(selector).scroll_into_view_if_needed()
    page.wait_for_function(
        f"document.querySelector('{selector}').complete"
        f" && document.querySelector('{selector}').naturalWidth > 0"
    )


def take(url: str, out: Path) -> list[Path]:
    """Open every page of the finished search and write one PNG per page into ``out``."""
    from playwright.sync_api import sync_playwright

    search = _finished_search(url)
    sid, did = search["id"], search["dataset_id"]
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        page = browser.new_context(viewport=VIEWPORT).new_page()

        def shot(name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=False)
            written.append(path)

        page.goto(f"{url}/")
        page.wait_for_function("document.querySelector('#searches').dataset.updated")
        shot("searches")
        page.goto(f"{url}/searches/{sid}")
        shot("search")
        page.evaluate("document.querySelector('#result').scrollIntoView()")
        shot("final-pick")
        page.goto(f"{url}/searches/{sid}/policy")
        _wait_image(page, "#policy-preview")
        page.evaluate("window.scrollTo(0, 0)")
        shot("policy")
        page.goto(f"{url}/datasets/{did}")
        _wait_image(page, "#dataset-samples")
        page.evaluate("window.scrollTo(0, 0)")
        shot("dataset")
        page.goto(f"{url}/presets/autoaugment-svhn?dataset={did}")
        _wait_image(page, "#policy-preview")
        page.evaluate("window.scrollTo(0, 0)")
        shot("preset")
        page.goto(f"{url}/workers")
        shot("workers")
        page.goto(f"{url}/launch?dataset_id={did}")
        page.fill('input[name="spec.n_trials"]', "0")
        page.fill('input[name="spec.recipe.epochs"]', "100000")
        page.click("#launch-submit")
        page.locator('[data-error-for="spec.n_trials"]').wait_for()
        shot("launch-errors")
        browser.close()
    return written


def main() -> None:
    """Parse the arguments and take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the demo's address")
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go")
    args = parser.parse_args()
    for path in take(args.url.rstrip("/"), args.out):
        print(path)


if __name__ == "__main__":
    main()
