"""deploy/docker-compose.yml read as Compose reads it, for the tests: no Docker involved.

YAML anchors and merge keys are resolved by the YAML loader, `${VAR:-default}` becomes its
default, and a required `${VAR:?message}` (the bus's REDIS_PASSWORD, the only value an operator
must give) becomes `STAND_IN`, and every pyBTC service (`pybtc serve <service>`)
becomes an `App`: its node (`node1-ledger` is node `node1`), its settings as the service itself
would read them (`Settings.from_env`), its published ports and its volumes in one shape whatever
syntax the file uses.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<sep>:?[-?])(?P<default>[^}]*))?\}")
STAND_IN = "stand-in-value"
"""What a required variable becomes here."""


@dataclass(frozen=True)
class Port:
    """One published port: host address, host port, container port."""

    host_ip: str
    published: str
    target: int


@dataclass(frozen=True)
class Mount:
    """One volume or bind mount: source (a volume name or a host path), target, read-only."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class App:
    """One pyBTC service of the stack."""

    name: str
    node: str
    role: str
    spec: dict[str, Any]
    env: dict[str, str]
    settings: Settings


def interpolate(value: Any) -> Any:
    """`${VAR:-default}` and `${VAR-default}` replaced by the default, `${VAR:?message}` by
    `STAND_IN`, everywhere in `value`."""
    if isinstance(value, str):
        return INTERPOLATION.sub(
            lambda m: STAND_IN if (m["sep"] or "").endswith("?") else m["default"] or "", value
        )
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


def raw_text() -> str:
    return COMPOSE_FILE.read_text()


def load() -> dict[str, Any]:
    document = yaml.safe_load(raw_text())
    assert isinstance(document, dict), f"{COMPOSE_FILE} is not a mapping"
    return dict(interpolate(document))


def command(spec: dict[str, Any]) -> list[str]:
    raw = spec.get("command", [])
    return shlex.split(raw) if isinstance(raw, str) else [str(word) for word in raw]


def environment(spec: dict[str, Any]) -> dict[str, str]:
    raw = spec.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def ports(spec: dict[str, Any]) -> list[Port]:
    found = []
    for entry in spec.get("ports", []):
        if isinstance(entry, dict):
            host_ip, published = str(entry.get("host_ip", "")), str(entry.get("published", ""))
            found.append(Port(host_ip, published, int(entry["target"])))
            continue
        parts = str(entry).split("/", 1)[0].rsplit(":", 2)
        parts = ["", "", *parts][-3:]  # [ip:][host:]container
        found.append(Port(parts[0], parts[1], int(parts[2])))
    return found


def mounts(spec: dict[str, Any]) -> list[Mount]:
    found = []
    for entry in spec.get("volumes", []):
        if isinstance(entry, dict):
            found.append(
                Mount(str(entry.get("source", "")), entry["target"], bool(entry.get("read_only")))
            )
            continue
        source, target, *mode = str(entry).split(":")
        found.append(Mount(source, target, "ro" in ",".join(mode).split(",")))
    return found


def depends_on(spec: dict[str, Any]) -> dict[str, str]:
    """Each service waited for, with its condition (the list form means service_started)."""
    raw = spec.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (how or {}).get("condition", "service_started") for name, how in raw.items()}


def apps(document: dict[str, Any]) -> list[App]:
    """Every service whose command is `pybtc ...`."""
    found = []
    for name, spec in document["services"].items():
        words = command(spec)
        if not words or words[0] != "pybtc":
            continue
        node, _, role = name.rpartition("-")
        env = environment(spec)
        found.append(App(name, node, role, spec, env, Settings.from_env(env)))
    return found
