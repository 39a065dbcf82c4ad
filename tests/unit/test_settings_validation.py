"""Every setting is checked when it is read: a bad value is refused with the variable, the value
and what is allowed, instead of passing and breaking a service later (issue 17)."""

from __future__ import annotations

import pytest

from pybtc import PrivateKey
from services.common.settings import Settings, SettingsError

BAD = [
    ("PYBTC_MINER_MODE", "turbo", "PYBTC_MINER_MODE='turbo': one of auto, on-demand"),
    ("PYBTC_LOG_LEVEL", "LOUD", "PYBTC_LOG_LEVEL='LOUD': one of DEBUG, INFO, WARNING, ERROR"),
    ("PYBTC_FAUCET", "of", "PYBTC_FAUCET='of': one of on, off"),
    ("PYBTC_NETWORK", "mainnet", "PYBTC_NETWORK='mainnet': one of devnet, regtest"),
    ("PYBTC_CLIENT_EXEMPT", "loopback,lan", "names from loopback, private, public, link-local"),
    ("PYBTC_PEER_NETWORKS", "public,cloud", "link-local, metadata"),
    ("PYBTC_LEDGER_PORT", "0", "PYBTC_LEDGER_PORT=0: a whole number from 1 to 65,535"),
    ("PYBTC_MINER_PORT", "65536", "from 1 to 65,535"),
    ("PYBTC_WALLET_PORT", "http", "PYBTC_WALLET_PORT='http': a whole number from 1 to 65,535"),
    ("PYBTC_PORT_OFFSET", "-1", "PYBTC_PORT_OFFSET=-1"),
    ("PYBTC_HOST", "my host", "PYBTC_HOST='my host': an IP address or a host name"),
    ("PYBTC_HOST", "http://0.0.0.0", "an IP address or a host name"),
    ("PYBTC_TRUSTED_PROXIES", "10.0.0.0/8,proxy", "addresses or CIDR ranges"),
    ("PYBTC_ALLOWED_HOSTS", "http://node.example", "without scheme, port or path"),
    ("PYBTC_PUBLIC_URL", "node.example:5000", "an http:// or https:// URL with a host"),
    ("PYBTC_LEDGER_URL", "ftp://127.0.0.1:5000", "an http:// or https:// URL with a host"),
    ("PYBTC_MINER_URL", "http://", "an http:// or https:// URL with a host"),
    ("PYBTC_EXPLORER_PUBLIC_URL", "http://a b/", "an http:// or https:// URL with a host"),
    ("PYBTC_PEERS", "http://127.0.0.1:5001,127.0.0.1:5002", "http:// or https:// URLs"),
    ("PYBTC_REDIS_URL", "http://127.0.0.1:6379", "a redis://, rediss:// or unix:// URL"),
    ("PYBTC_REDIS_URL", "redis://127.0.0.1:port", "a redis://, rediss:// or unix:// URL"),
    ("PYBTC_MINER_ADDRESS", "P123", "PYBTC_MINER_ADDRESS='P123': a pyBTC address"),
    ("PYBTC_AUTO_MINE", "-1", "PYBTC_AUTO_MINE=-1.0: a number of seconds from 0"),
    ("PYBTC_AUTO_MINE", "soon", "PYBTC_AUTO_MINE='soon': a number of seconds from 0"),
    ("PYBTC_PEER_TIMEOUT", "0", "a number of seconds above 0"),
    ("PYBTC_SYNC_INTERVAL", "nan", "a number of seconds above 0"),
    ("PYBTC_MINE_TIMEOUT", "inf", "a number of seconds above 0"),
    ("PYBTC_CLIENT_RATE", "-5", "a whole number from 0 to 1,000,000,000 (0: no limit)"),
    ("PYBTC_CLIENT_BURST", "0", "PYBTC_CLIENT_BURST=0: a whole number from 1"),
    ("PYBTC_MEMPOOL_MAX_COUNT", "0", "a whole number from 1"),
    ("PYBTC_MAX_BODY_BYTES", "10", "a whole number from 1,024"),
    ("PYBTC_FAUCET_AMOUNT", "0", "a whole number from 1"),
    ("PYBTC_ANNOUNCE_RATE", "-0.5", "a number from 0 to 1,000,000 (0: no limit)"),
    ("PYBTC_MINER_WORKERS", "2.5", "a whole number from 0 to 1,024 (0: one per core)"),
]

GOOD = [
    ("PYBTC_MINER_MODE", "on-demand"),
    ("PYBTC_LOG_LEVEL", "debug"),
    ("PYBTC_FAUCET", "OFF"),
    ("PYBTC_FAUCET", "yes"),
    ("PYBTC_NETWORK", "regtest"),
    ("PYBTC_CLIENT_EXEMPT", "loopback, private"),
    ("PYBTC_PEER_NETWORKS", "public,metadata"),
    ("PYBTC_LEDGER_PORT", "65535"),
    ("PYBTC_PORT_OFFSET", "1000"),
    ("PYBTC_HOST", "::"),
    ("PYBTC_HOST", "node-1.example.org"),
    ("PYBTC_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
    ("PYBTC_ALLOWED_HOSTS", "node.example,[::1]"),
    ("PYBTC_PUBLIC_URL", "https://node.example"),
    ("PYBTC_LEDGER_URL", "http://[::1]:5000"),
    ("PYBTC_PEERS", "http://127.0.0.1:5001, http://node2:5000"),
    ("PYBTC_REDIS_URL", "rediss://:secret@redis.example:6380/0"),
    ("PYBTC_REDIS_URL", "unix:///run/redis.sock"),
    ("PYBTC_MINER_ADDRESS", PrivateKey.generate().address),
    ("PYBTC_AUTO_MINE", "0"),
    ("PYBTC_AUTO_MINE", "0.5"),
    ("PYBTC_CLIENT_RATE", "0"),
    ("PYBTC_ANNOUNCE_RATE", "0"),
    ("PYBTC_PEER_REGISTER_RATE", "0"),
    ("PYBTC_FAUCET_INTERVAL", "0"),
    ("PYBTC_MINER_MODE", ""),
]


@pytest.mark.parametrize(("variable", "value", "message"), BAD)
def test_a_bad_value_is_refused_naming_what_is_allowed(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: value})
    assert str(refused.value).startswith(f"{variable}=")
    assert message in str(refused.value)


@pytest.mark.parametrize(("variable", "value"), GOOD)
def test_a_good_value_is_taken(variable: str, value: str) -> None:
    settings = Settings.from_env({variable: value})
    assert str(getattr(settings, variable.removeprefix("PYBTC_").lower())) != "" or value == ""


def test_the_exact_line_for_the_issue_examples() -> None:
    for variable, value, line in [
        ("PYBTC_MINER_MODE", "turbo", "PYBTC_MINER_MODE='turbo': one of auto, on-demand"),
        (
            "PYBTC_LOG_LEVEL",
            "LOUD",
            "PYBTC_LOG_LEVEL='LOUD': one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)",
        ),
        (
            "PYBTC_FAUCET",
            "of",
            "PYBTC_FAUCET='of': one of on, off, yes, no, true, false, 1, 0 (any case)",
        ),
    ]:
        with pytest.raises(SettingsError, match=None) as refused:
            Settings.from_env({variable: value})
        assert str(refused.value) == line


def test_ports_are_checked_after_the_offset() -> None:
    assert Settings.from_env({"PYBTC_PORT_OFFSET": "57000"}).wallet_port == 65081
    with pytest.raises(SettingsError, match=r"PYBTC_EXPLORER_PORT=65580: a whole number from 1"):
        Settings.from_env({"PYBTC_PORT_OFFSET": "57500"})


def test_the_faucet_switch_is_read_once() -> None:
    for value, on in [("on", True), ("YES", True), ("true", True), ("1", True)]:
        assert Settings.from_env({"PYBTC_FAUCET": value}).faucet_on is on
    for value in ("off", "No", "false", "0"):
        assert Settings.from_env({"PYBTC_FAUCET": value}).faucet_on is False


def test_settings_built_in_code_are_checked_on_request() -> None:
    """Tests build Settings(...) with values no operator would (port 0: any free port), so
    building checks nothing; validate() applies the same rules as from_env."""
    loose = Settings(ledger_port=0, miner_mode="turbo")
    with pytest.raises(SettingsError, match="PYBTC_LEDGER_PORT=0"):
        loose.validate()
    assert Settings().validate() == Settings()
    with pytest.raises(SettingsError, match="PYBTC_MINER_MODE='turbo'"):
        Settings(miner_mode="turbo").validate()


def test_unknown_variables_are_kept_for_a_warning() -> None:
    settings = Settings.from_env({"PYBTC_MINER_MOD": "auto", "PYBTC_WALLET_URL": "http://x"})
    assert settings.extra == {"PYBTC_MINER_MOD": "auto"}
