"""Every setting a node reads is documented in docs/operations.md, with nothing documented that
no longer exists: the table is what an operator reads to run a node in public."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from services.common.settings import CLIENT_ONLY, PREFIX, Settings

OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def test_every_setting_is_in_the_operations_table() -> None:
    text = OPERATIONS.read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("| `PYBTC_"))
    documented = set(re.findall(r"`(PYBTC_[A-Z_]+)`", table))
    settings = {PREFIX + f.name.upper() for f in fields(Settings) if f.name != "extra"}
    assert settings - documented == set(), "settings missing from docs/operations.md"
    assert documented - settings - CLIENT_ONLY == set(), "documented settings that do not exist"
