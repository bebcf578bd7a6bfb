"""Suite-wide rules.

Under CI (``AUGSEARCH_CI=1``, set by ``.ci/run``) PostgreSQL and chromium are provided, so a
`postgres` or `browser` test that skips is a broken environment, not an optional extra: it is
reported as a failure instead of passing quietly.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

REQUIRED_IN_CI = ("postgres", "browser")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        os.environ.get("AUGSEARCH_CI") == "1"
        and report.skipped
        and any(item.get_closest_marker(m) for m in REQUIRED_IN_CI)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI, where PostgreSQL and chromium must be present: {report.longrepr}"
        )
    return report
