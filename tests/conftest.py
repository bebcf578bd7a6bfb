"""Suite-wide rules.

Under CI (``AUGSEARCH_CI=1``, set by ``.ci/run``) PostgreSQL and chromium are provided, so a
`postgres` or `browser` test that skips is a broken environment, not an optional extra: it is
reported as a failure instead of passing quietly.

Every process the session starts carries ``AUGSEARCH_TEST_SESSION`` in its environment; a
Python one still alive when the session ends (a worker that outlived its server) fails it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator
from pathlib import Path

import pytest
from servertools import python_processes_with_env, wait_gone

REQUIRED_IN_CI = ("postgres", "browser")
SESSION_ENV = "AUGSEARCH_TEST_SESSION"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[SESSION_ENV] = str(os.getpid())


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session if a Python process it started is still running (they are killed)."""
    started = python_processes_with_env(SESSION_ENV, str(os.getpid()))
    left = sorted(wait_gone(set(started), timeout_s=10))
    if not left:
        return
    lines = []
    for pid in left:
        try:
            lines.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:300]!r}")
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("processes started by this session outlived it (killed):", red=True)
        for line in lines:
            reporter.write_line(f"  {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
