"""`python -m tests.chaos --seconds 600 [--seed N] [--keep DIR]`: one chaos run, its figures.

Prints the run's narration (log lines) on stderr and its figures on stdout; exits 1 if any
invariant failed. Without `--seed` a random seed is drawn (and printed first, so an interrupted
run can be replayed too). The nodes' data and logs go to a temporary directory, removed after a
passing run and kept after a failing one (or always, with `--keep`).
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.chaos.run import run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long faults go on")
    parser.add_argument("--seed", type=int, default=None, help="the fault schedule's seed")
    parser.add_argument("--keep", type=Path, default=None, help="keep data and logs here")
    parser.add_argument("--verbose", action="store_true", help="debug log lines")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"chaos seed {seed}", flush=True)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=False)
        root = args.keep
    else:
        root = Path(tempfile.mkdtemp(prefix="pybtc-chaos-"))
    report = run_chaos(args.seconds, seed, root / "run")
    print(report.text(), flush=True)
    if report.passed and args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    elif not report.passed:
        print(f"data and logs kept in {root}", flush=True)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
