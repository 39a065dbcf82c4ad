"""The chaos run as a test: three nodes under load while a seeded driver kills and cuts.

Marked `chaos`, so `make pytest` leaves it out; `make chaos-short` (CI) runs it for
PYBTC_CHAOS_SECONDS (default 75) of faults, about a minute and a half in all. The fault
schedule's seed is PYBTC_CHAOS_SEED, or a fresh one; it is printed with the figures, which are
printed whether the run passes or not (`python -m tests.chaos --seed N` replays the faults).
What the run does and checks: `tests/chaos/run.py`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.chaos.run import run_chaos

SECONDS = float(os.environ.get("PYBTC_CHAOS_SECONDS") or 75)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(SECONDS + 600)]


def test_chaos_run_keeps_every_invariant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One tip, no acknowledged transfer lost, supply = subsidies, no negative balance, sound
    databases, bounded memory, every process restarted and every cut healed."""
    seed = int(os.environ.get("PYBTC_CHAOS_SEED") or random.SystemRandom().randrange(2**31))
    report = run_chaos(SECONDS, seed, tmp_path / "run")
    with capsys.disabled():
        print(f"\n{report.text()}\n(data and logs: {tmp_path / 'run'})")
    assert report.passed, report.text()
