"""GrpcStorageProxy mode: ``augsearch storage-proxy`` in front of PostgreSQL, workers behind it;
leases stand in for the heartbeats the proxy does not carry."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState
from scaletools import (
    assert_budget_exact,
    assert_retried,
    drive,
    fixed_spec,
    start_worker,
    stop_all,
    trials_of,
    wait_for,
)
from servertools import free_port

from search import lifecycle
from search.storage import LEASE_ATTR, make_storage, parse_grpc_url

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_grpc_urls_are_parsed_or_refused() -> None:
    assert parse_grpc_url("grpc://proxy.internal:13000") == ("proxy.internal", 13000)
    for bad in ("grpc://host", "grpc://:13000", "grpc://host:0", "grpc://host:port"):
        with pytest.raises(ValueError, match=r"(?i)grpc"):
            parse_grpc_url(bad)


def test_workers_behind_the_proxy_finish_a_search_and_a_killed_ones_lease_expires(
    pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    proxy_cmd = [sys.executable, "-m", "service.cli", "storage-proxy", "--storage", pg_url,
                 "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proxy = subprocess.Popen(proxy_cmd, env={**os.environ}, stdout=subprocess.DEVNULL)
    grpc_url = f"grpc://127.0.0.1:{port}"
    db = make_storage(pg_url, heartbeat_interval=1)  # the reconciler's direct connection
    lifecycle.create_search_study(db, "g1", fixed_spec(3, parallelism=1))
    procs = [start_worker(grpc_url, tmp_path / "art", "gvictim", seconds=30, steps=30)]
    try:
        wait_for(lambda: any(t.state == TrialState.RUNNING and LEASE_ATTR in t.system_attrs
                             and t.intermediate_values for t in trials_of(db, "g1")),
                 90, "a leased trial mid-run")  # fmt: skip
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        # With no worker alive, the direct reaper fails the trial once its lease expires.
        wait_for(lambda: lifecycle.fail_stale(db, "g1") == [0], 30, "the lease to expire")
        procs.append(start_worker(grpc_url, tmp_path / "art", "gworker", seconds=0.3))
        drive(db, ["g1"], timeout_s=90)
    finally:
        stop_all(procs)
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(timeout=30)
    trials = trials_of(db, "g1")
    assert_budget_exact(trials, 3)
    assert_retried(trials, 0, "gworker")
