"""What every benchmark shares: figures and their verdicts, the machine, processes, HTTP timing.

A `Figure` is one line of the report: pyBTC's samples, the tutorial's samples where it has a
counterpart, whether higher or lower is better, and the goal from the benchmarks issue. The
report prints the median and the spread (min–max) of each side and the ratio of the medians,
turned so that a ratio above 1 always means pyBTC is better.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

REPO = Path(__file__).resolve().parents[1]


def say(message: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Figure:
    """One figure of the report."""

    section: str
    name: str
    unit: str
    pybtc: list[float]
    tutorial: list[float] | None = None
    higher_is_better: bool = True
    goal: str = ""
    check: Callable[[Figure], bool | None] | None = None
    """Whether the goal is met (None: nothing to judge, e.g. the other side is missing)."""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.pybtc)

    @property
    def tutorial_median(self) -> float | None:
        return statistics.median(self.tutorial) if self.tutorial else None

    @property
    def ratio(self) -> float | None:
        """How many times better pyBTC's median is than the tutorial's (>1: pyBTC better)."""
        other = self.tutorial_median
        if other is None or other <= 0 or self.median <= 0:
            return None
        return self.median / other if self.higher_is_better else other / self.median

    @property
    def verdict(self) -> str:
        if self.check is None:
            return ""
        met = self.check(self)
        return "—" if met is None else ("met" if met else "**not met**")


def ratio_at_least(minimum: float) -> Callable[[Figure], bool | None]:
    def check(figure: Figure) -> bool | None:
        return None if figure.ratio is None else figure.ratio >= minimum

    return check


def flat(small: Figure, tolerance: float = 1.5) -> Callable[[Figure], bool | None]:
    """The goal 'flat as the chain grows': the large chain's median within `tolerance` × the
    small chain's (lower-is-better figures)."""

    def check(large: Figure) -> bool | None:
        return large.median <= tolerance * small.median

    return check


def fmt(value: float, unit: str) -> str:
    if unit in ("ms", "µs"):
        return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
    if unit == "s":
        return f"{value:,.2f}"
    if unit == "MiB":
        return f"{value:,.1f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def cell(values: list[float] | None, unit: str) -> str:
    if not values:
        return "—"
    median = statistics.median(values)
    if len(values) == 1:
        return fmt(median, unit)
    return f"{fmt(median, unit)} ({fmt(min(values), unit)}–{fmt(max(values), unit)})"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> str:
    usable = len(os.sched_getaffinity(0))
    return (
        f"{os.cpu_count()} cores ({usable} usable), {cpu_model()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process with its output in a log file; `stop` terminates it, then kills."""

    args: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                env=dict(os.environ) | self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def get(url: str, timeout: float = 120) -> tuple[int, bytes]:
    """One GET on a fresh connection: status and body (redirects not followed)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60) -> float:
    """Poll `url` until it answers 200; the seconds it took."""
    start = time.monotonic()
    while True:
        with contextlib.suppress(OSError):
            if get(url, timeout=10)[0] == 200:
                return time.monotonic() - start
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{url}: the process exited:\n{proc.tail()}")
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{url} did not answer 200 in {timeout:.0f}s")
        time.sleep(0.02)


def timed_get(url: str) -> float:
    """Milliseconds for one GET on a fresh connection, the whole body read; a 4xx or 5xx raises
    (a redirect is an answer: the explorer's search by height answers 302, not followed)."""
    start = time.perf_counter()
    status, body = get(url)
    elapsed = (time.perf_counter() - start) * 1000
    if status >= 400:
        raise RuntimeError(f"{url} answered {status}: {body[:200]!r}")
    return elapsed


def http_post_form(url: str, fields: dict[str, str]) -> float:
    """Milliseconds for one form POST on a fresh connection, the whole body read."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    start = time.perf_counter()
    try:
        conn.request(
            "POST",
            parts.path or "/",
            body=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{url} answered {resp.status}: {body[:200]!r}")
    return (time.perf_counter() - start) * 1000


def alternate(
    sides: dict[str, Callable[[], float]], rounds: int, turn: int = 1
) -> dict[str, list[float]]:
    """Each side in turn, `turn` runs at a time, `rounds` times over (one warm-up run of each
    first); every run is a sample. A turn of a few runs measures each side as it serves a user
    who asks again, not only right after the other side has filled the caches."""
    for run in sides.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            samples[name] += [run() for _ in range(turn)]
    return samples


def rss_peak_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def service_pid(parent: int, module: str) -> int:
    """The pid of the descendant of `parent` running `python -m <module>`."""
    todo = [parent]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if module.encode() in cmdline:
                return pid
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    raise RuntimeError(f"no process running {module} under pid {parent}")


def drain(proc: subprocess.Popen[str], keep: list[str]) -> threading.Thread:
    """Read a child's piped output in the background (a full pipe would stall its services),
    keeping the last 2,000 lines in `keep`."""

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            keep.append(line)
            del keep[:-2000]

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread
