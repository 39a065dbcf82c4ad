"""`pybtc` is pure: importing it loads no web framework, no Redis client and no event loop."""

from __future__ import annotations

import subprocess
import sys


def test_importing_pybtc_loads_neither_aiohttp_nor_redis() -> None:
    code = (
        "import sys, pybtc, pybtc.chain, pybtc.mining, pybtc.state\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'aiohttp', 'redis', 'asyncio', 'sqlite3', 'services', 'jinja2'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_pybtc_sources_import_nothing_from_services() -> None:
    from pathlib import Path

    import pybtc

    root = Path(pybtc.__file__).parent
    for path in root.glob("*.py"):
        text = path.read_text()
        for banned in ("import aiohttp", "import redis", "import asyncio", "from services"):
            assert banned not in text, f"{path.name} has {banned!r}"
