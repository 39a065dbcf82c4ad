"""What /proc says about the run's processes: memory, children, liveness, leftovers (Linux)."""

from __future__ import annotations

import os
from pathlib import Path


def rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a live process (VmRSS), or None when it is gone."""
    if pid is None:
        return None
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (from every thread's /proc children list)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return found


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def leftovers(root: Path) -> list[int]:
    """Processes still running from this run: a data dir of it in their environment (services,
    hashing workers) or as their working directory (redis-server)."""
    marker = f"PYBTC_DATA_DIR={root}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if marker in environ or Path(cwd).is_relative_to(root):
            found.append(int(entry))
    return found
