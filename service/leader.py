"""Leader election for the reconciler: one API process advances searches at a time.

PostgreSQL: a session-level advisory lock held on a dedicated connection (released by the
server if the process dies or the server restarts; the leader notices on its next pass and
competes again). SQLite: an exclusive ``flock`` on a file beside the database
(released by the kernel if the process dies). Both are non-blocking: followers retry later.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, exc, text

# An arbitrary constant shared by every process of one deployment ("augsrch" in ASCII).
ADVISORY_LOCK_KEY = 0x61756773726368


class LeaderLock:
    """A non-blocking, process-wide leadership lock.

    Args:
        engine: The service engine (its dialect picks the mechanism).
        lock_file: The file locked on SQLite.
    """

    def __init__(self, engine: Engine, lock_file: Path) -> None:
        self._engine = engine
        self._lock_file = lock_file
        self._conn: Connection | None = None
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this process is the leader."""
        return self._conn is not None or self._handle is not None

    def try_acquire(self) -> bool:
        """Become the leader if nobody else is; returns whether this process leads now."""
        if self.held and self._alive():
            return True
        if self._engine.dialect.name == "postgresql":
            conn = self._engine.connect()
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}
                ).scalar()
            )
            conn.commit()
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        handle = self._lock_file.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return True

    def _alive(self) -> bool:
        """Whether the held lock still exists; a lost connection (server restart) loses it."""
        if self._conn is None:
            return True
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except exc.DBAPIError:
            # The server dropped the session and its advisory lock: compete for it again.
            self._conn.invalidate()
            self._conn.close()
            self._conn = None
            return False

    def release(self) -> None:
        """Give leadership up (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                self._conn.commit()
            except exc.DBAPIError:
                pass  # the connection is gone, and the server released the lock with it
            finally:
                self._conn.close()
                self._conn = None
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
