"""A child process that dies with the process that started it, whatever kills that one.

`pybtc up` starts every service (and its embedded redis-server) in a session of its own, so
that Ctrl-C in a terminal reaches `pybtc up` alone and it stops them in order. A session of its
own also means nobody stops them if `pybtc up` is killed with SIGKILL. On Linux
`prctl(PR_SET_PDEATHSIG, SIGTERM)` asks the kernel to send the child SIGTERM when its parent
dies. The kernel watches the parent *thread* that forked the child, so the parent must start
children from a thread that lives as long as it does (`pybtc up` uses its main thread).
Elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen` tying the child's life to this process (Linux),
    or None where the platform has no such hook."""
    if sys.platform != "linux":
        return None
    parent = os.getpid()

    def tie() -> None:  # runs in the child between fork and exec
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the hook was set
            os.kill(os.getpid(), signal.SIGTERM)

    return tie
