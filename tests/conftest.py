"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest

from tests.chainutil import FundedChain, make_funded_chain


@pytest.fixture
def funded() -> FundedChain:
    """A regtest chain of genesis + 3 blocks mined to test key 0 (150 pyBTC), with 3 other keys."""
    return make_funded_chain(blocks=3)
