"""Child processes that end with their parent (Linux: ``PR_SET_PDEATHSIG``).

A server or worker fleet that is killed, or stopped by a signal it could not handle, must not
leave its worker processes behind: they would go on serving the database beside the workers
of its next start. `die_with_parent` asks the kernel to send the calling process SIGTERM when
its parent dies, which a worker takes as its stop signal (it hands its trial back). The kernel
watches the parent *thread* that started the child, so start children from a thread that
lives as long as they should.

``python -m search.parent PID COMMAND...`` runs COMMAND in its place (exec keeps the setting),
so that a program that cannot ask for it itself (optuna-dashboard) ends with process PID too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: Set by a parent in the environment of the workers it starts: its process id.
PARENT_ENV = "AUGSEARCH_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Have this process receive SIGTERM when its parent, process ``parent_pid``, dies.

    Elsewhere than on Linux this does nothing: the parent's own shutdown is all there is.

    Raises:
        OSError: when the kernel refuses the request.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent_pid:  # it died before the request: nothing would be sent
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    """``PID COMMAND...``: end with process PID, then become COMMAND."""
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: python -m search.parent PID COMMAND [ARG...]")
    die_with_parent(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
