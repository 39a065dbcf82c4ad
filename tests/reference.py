"""The tutorial's own programs (shared/reference/) and the virtualenv they run in.

They need flask, requests and pandas, which stay out of pyBTC's environment: a separate
`.venv-reference/` is built once (beside its final place, then renamed in, so a half-built or
concurrently built one is never used) and reused while its imports work. Used by the tests that
point the tutorial's clients at pyBTC and by the benchmarks that run the tutorial beside pyBTC.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO.parent / "shared" / "reference"
REFERENCE_VENV = REPO / ".venv-reference"
REFERENCE_REQUIREMENTS = ("flask==3.1.3", "requests==2.34.2", "pandas==3.1.1")
IMPORT_CHECK = "import flask, requests, pandas"


def _imports_work(python: Path) -> bool:
    if not python.is_file():
        return False
    check = subprocess.run(
        [str(python), "-c", IMPORT_CHECK], capture_output=True, timeout=120, check=False
    )
    return check.returncode == 0


@functools.cache
def reference_venv() -> tuple[Path | None, str]:
    """(python, "") once the reference virtualenv works, else (None, why); built at most once."""
    python = REFERENCE_VENV / "bin" / "python"
    if _imports_work(python):
        return python, ""
    build = REPO / f".venv-reference.build-{os.getpid()}"
    logger.info("building %s with %s (once)", REFERENCE_VENV, " ".join(REFERENCE_REQUIREMENTS))
    try:
        pip = [str(build / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        for step in (
            [sys.executable, "-m", "venv", str(build)],
            [*pip, "--disable-pip-version-check", *REFERENCE_REQUIREMENTS],
        ):
            done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                return None, f"{' '.join(step)} failed:\n{done.stdout}\n{done.stderr}"
        if not _imports_work(python):
            shutil.rmtree(REFERENCE_VENV, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process renamed its build in first
            build.rename(REFERENCE_VENV)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    if not _imports_work(python):
        return None, f"{python} cannot `{IMPORT_CHECK}` after building {REFERENCE_VENV}"
    return python, ""
