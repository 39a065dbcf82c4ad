"""The compose stack, checked without Docker: deploy/docker-compose.yml.

First against the Compose Specification's JSON schema (check-jsonschema's bundled copy), then
for what a schema cannot see: every `depends_on` target exists, has a health check and is
waited for until healthy; published ports are unique and on 127.0.0.1 only; every pyBTC
service runs `pybtc serve <service>` with the settings that service needs, each of them a real
setting (a typo fails here rather than being ignored in a container); the services of a node
find their ledger, its bus and its data; ledgers find their peers; wallets link to an explorer
the host's browser can open.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from services.cli import SERVICES
from services.common.origins import AllowedHosts
from services.common.redis_auth import DISABLED_COMMANDS
from services.common.settings import PREFIX, Settings
from services.node.peers import PeerPolicy, normalize_peer_url
from tests.deploy import compose
from tests.deploy.compose import App

SETTING_NAMES = frozenset(PREFIX + f.name.upper() for f in fields(Settings) if f.name != "extra")
LOOPBACK = "127.0.0.1"
SCHEMA = ("--builtin-schema", "vendor.compose-spec")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return compose.load()


@pytest.fixture(scope="module")
def services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(document["services"])


@pytest.fixture(scope="module")
def apps(document: dict[str, Any]) -> list[App]:
    found = compose.apps(document)
    assert found, "no `pybtc ...` service in the compose file"
    return found


@pytest.fixture(scope="module")
def nodes(apps: list[App]) -> dict[str, dict[str, App]]:
    """node name → role → App."""
    by_node: dict[str, dict[str, App]] = {}
    for app in apps:
        by_node.setdefault(app.node, {})[app.role] = app
    return by_node


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *SCHEMA, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- the schema ----------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification() -> None:
    result = check_jsonschema(compose.COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    """The check bites: one misspelt key in a copy of the file fails it."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(compose.raw_text().replace("\n    depends_on:", "\n    depend_on:", 1))
    result = check_jsonschema(broken)
    assert result.returncode != 0
    assert "depend_on" in result.stdout


def test_every_variable_has_a_default() -> None:
    """`docker compose up` works with no .env and no exported variables."""
    for found in re.finditer(r"\$\{[^}]*\}", compose.raw_text()):
        match = compose.INTERPOLATION.fullmatch(found[0])
        assert match is not None, f"{found[0]}: write ${{NAME:-default}}"
        assert match["sep"], f"{found[0]} needs a default: ${{NAME:-default}}"


# -- health and start order ----------------------------------------------------------------------


def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, spec in services.items():
        check = spec.get("healthcheck") or {}
        test = check.get("test")
        assert test, f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck {test}"
        assert len(test) > 1, f"{name}: healthcheck {test}"


def test_depends_on_targets_exist_and_are_waited_for_until_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, spec in services.items():
        for target, condition in compose.depends_on(spec).items():
            assert target in services, f"{name} depends on {target}, which is not a service"
            assert target != name, f"{name} depends on itself"
            assert condition == "service_healthy", f"{name} → {target}: condition {condition}"
            assert services[target].get("healthcheck"), f"{name} waits for {target}: no check"


def test_start_order_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        assert state.get(name) != "visiting", f"depends_on cycle: {' → '.join([*path, name])}"
        if state.get(name) == "done":
            return
        state[name] = "visiting"
        for target in compose.depends_on(services[name]):
            if target in services:  # a missing one is the test above's finding
                visit(target, [*path, name])
        state[name] = "done"

    for name in services:
        visit(name, [])


# -- ports ---------------------------------------------------------------------------------------


def test_published_ports_are_unique_and_on_loopback_only(
    services: dict[str, dict[str, Any]],
) -> None:
    seen: Counter[str] = Counter()
    for name, spec in services.items():
        for port in compose.ports(spec):
            assert port.host_ip == LOOPBACK, f"{name}: {port} is not bound to {LOOPBACK} only"
            assert port.published.isdigit(), f"{name}: {port} has no fixed host port"
            seen[port.published] += 1
    assert seen, "nothing is published"
    assert [p for p, n in seen.items() if n > 1] == []


def test_each_app_publishes_its_own_port(apps: list[App]) -> None:
    for app in apps:
        own = getattr(app.settings, f"{app.role}_port")
        for port in compose.ports(app.spec):
            assert port.target == own, f"{app.name} publishes {port.target}, listens on {own}"


def test_the_bus_is_not_published(services: dict[str, dict[str, Any]], apps: list[App]) -> None:
    """Anyone who reaches the Redis can publish on the bus: it stays inside the network."""
    for name in set(services) - {app.name for app in apps}:
        assert compose.ports(services[name]) == [], f"{name} is published"


def test_apps_listen_on_the_container_interfaces(apps: list[App]) -> None:
    """On 127.0.0.1 a service would be unreachable from other containers and the host."""
    for app in apps:
        assert app.settings.host == "0.0.0.0", f"{app.name}: PYBTC_HOST={app.settings.host}"


# -- commands and settings -----------------------------------------------------------------------


def test_every_app_runs_pybtc_serve_one_service(apps: list[App]) -> None:
    for app in apps:
        assert compose.command(app.spec) == ["pybtc", "serve", app.role], app.name
        assert app.role in SERVICES, f"{app.name}: `pybtc serve {app.role}` is no service"
        assert re.fullmatch(r"[a-z][a-z0-9]*", app.node), f"{app.name}: name it <node>-<service>"


def test_every_node_runs_the_four_services(nodes: dict[str, dict[str, App]]) -> None:
    assert len(nodes) >= 2, "a network needs more than one node"
    for node, roles in nodes.items():
        assert sorted(roles) == sorted(SERVICES), f"{node} runs {sorted(roles)}"


def test_every_pybtc_variable_is_a_setting(apps: list[App]) -> None:
    """A misspelt PYBTC_* variable would be ignored by the service: it fails here instead."""
    for app in apps:
        unknown = sorted(k for k in app.env if k.startswith(PREFIX) and k not in SETTING_NAMES)
        assert unknown == [], f"{app.name}: not settings: {unknown}"
        assert app.settings.extra == {}


def test_one_network_everywhere(apps: list[App]) -> None:
    assert {app.settings.network for app in apps} == {"devnet"}
    assert all("PYBTC_NETWORK" in app.env for app in apps)


def test_every_app_has_the_bus(apps: list[App], services: dict[str, dict[str, Any]]) -> None:
    for app in apps:
        url = app.env.get("PYBTC_REDIS_URL", "")
        assert url, f"{app.name}: no PYBTC_REDIS_URL (`pybtc serve` starts no Redis)"
        host = urlsplit(url).hostname or ""
        assert host in services, f"{app.name}: the bus {url} is not a service of the stack"
        assert host in compose.depends_on(app.spec), f"{app.name} does not wait for {host}"


def test_the_services_of_a_node_share_its_identity(nodes: dict[str, dict[str, App]]) -> None:
    """The miner, explorer and wallet recognise their ledger's announcements by its origin."""
    origins = {}
    for node, roles in nodes.items():
        for app in roles.values():
            assert "PYBTC_NODE_ID" in app.env, f"{app.name}: PYBTC_NODE_ID is not set"
        found = {app.settings.origin for app in roles.values()}
        assert len(found) == 1, f"{node}: its services disagree on the node id: {found}"
        origins[node] = found.pop()
    assert len(set(origins.values())) == len(origins), f"two nodes share an id: {origins}"


def test_each_ledger_announces_its_own_address(nodes: dict[str, dict[str, App]]) -> None:
    for roles in nodes.values():
        ledger = roles["ledger"]
        public = urlsplit(ledger.settings.ledger_public_url)
        assert (public.hostname, public.port) == (ledger.name, ledger.settings.ledger_port), (
            f"{ledger.name}: PYBTC_PUBLIC_URL={ledger.settings.ledger_public_url}"
        )


def test_services_reach_their_own_nodes_ledger(nodes: dict[str, dict[str, App]]) -> None:
    for roles in nodes.values():
        ledger = roles["ledger"]
        for app in roles.values():
            if app is ledger:
                continue
            assert "PYBTC_LEDGER_URL" in app.env, f"{app.name}: no PYBTC_LEDGER_URL"
            url = urlsplit(app.settings.ledger_internal_url)
            assert (url.hostname, url.port) == (ledger.name, ledger.settings.ledger_port), (
                f"{app.name}: PYBTC_LEDGER_URL={app.settings.ledger_internal_url}, "
                f"its ledger is http://{ledger.name}:{ledger.settings.ledger_port}"
            )
            assert ledger.name in compose.depends_on(app.spec), f"{app.name} starts before it"


def test_peers_are_other_ledgers_that_start_first(nodes: dict[str, dict[str, App]]) -> None:
    """Start-up registration happens once: a ledger waits for the peers it names."""
    ledgers = {roles["ledger"].name: roles["ledger"] for roles in nodes.values()}
    for ledger in ledgers.values():
        policy = PeerPolicy.from_setting(ledger.settings.peer_network_names, 64, "")
        assert "private" in policy.networks, f"{ledger.name}: compose addresses are private"
        for raw in filter(None, (p.strip() for p in ledger.settings.peers.split(","))):
            url = urlsplit(normalize_peer_url(raw))
            assert url.hostname in ledgers, f"{ledger.name}: peer {raw} is no ledger here"
            assert url.hostname != ledger.name, f"{ledger.name} names itself as a peer"
            assert url.port == ledgers[url.hostname].settings.ledger_port, raw
            assert url.hostname in compose.depends_on(ledger.spec), f"{ledger.name} → {raw}"


def test_every_ledger_is_connected_to_the_network(nodes: dict[str, dict[str, App]]) -> None:
    """Registration goes both ways (and is passed on): the peer graph must be connected."""
    links: dict[str, set[str]] = {roles["ledger"].name: set() for roles in nodes.values()}
    for roles in nodes.values():
        ledger = roles["ledger"]
        for peer in _peers(ledger):
            links[ledger.name].add(peer)
            links.setdefault(peer, set()).add(ledger.name)
    reached: set[str] = set()
    todo = [next(iter(links))]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(links[name])
    assert reached == set(links), f"not connected by PYBTC_PEERS: {set(links) - reached}"


def _peers(ledger: App) -> list[str]:
    """The host names of a ledger's PYBTC_PEERS."""
    raws = (p.strip() for p in ledger.settings.peers.split(","))
    return [urlsplit(normalize_peer_url(raw)).hostname or "" for raw in raws if raw]


def test_miners_use_few_workers(nodes: dict[str, dict[str, App]]) -> None:
    """0 means one worker per core in every miner container: several nodes would oversubscribe."""
    for roles in nodes.values():
        miner = roles["miner"]
        assert miner.settings.miner_workers >= 1, f"{miner.name}: set PYBTC_MINER_WORKERS"


# -- volumes -------------------------------------------------------------------------------------


def test_named_volumes_are_declared(
    document: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(document.get("volumes") or {})
    for name, spec in services.items():
        for mount in compose.mounts(spec):
            is_path = mount.source.startswith(("/", ".", "~"))
            assert is_path or mount.source in declared, f"{name}: volume {mount.source}?"


def test_each_node_keeps_its_data_in_its_own_volume(nodes: dict[str, dict[str, App]]) -> None:
    """The ledger's database and the miner's key (which the wallet's faucet spends) share it."""
    volumes = {}
    for node, roles in nodes.items():
        data = {role: _data_volume(roles[role]) for role in ("ledger", "miner", "wallet")}
        for role, mount in data.items():
            assert mount is not None, f"{roles[role].name}: no volume at its data dir"
            assert mount.source == data["ledger"].source, f"{roles[role].name}: not {node}'s data"
        assert not data["ledger"].read_only, f"{node}: the ledger writes its database there"
        assert not data["miner"].read_only, f"{node}: the miner makes its key there"
        volumes[node] = data["ledger"].source
    assert len(set(volumes.values())) == len(volumes), f"nodes share a data volume: {volumes}"


def _data_volume(app: App) -> compose.Mount | None:
    """What is mounted at the service's PYBTC_DATA_DIR (which must be absolute)."""
    data_dir = app.settings.data_dir
    assert data_dir.is_absolute(), f"{app.name}: PYBTC_DATA_DIR={data_dir} is not absolute"
    return next((m for m in compose.mounts(app.spec) if m.target == str(data_dir)), None)


# -- what the host's browser opens ---------------------------------------------------------------


def test_wallets_link_to_their_nodes_explorer_on_the_host(nodes: dict[str, dict[str, App]]) -> None:
    for roles in nodes.values():
        wallet, explorer = roles["wallet"], roles["explorer"]
        (published,) = compose.ports(explorer.spec)
        link = urlsplit(wallet.settings.explorer_url)
        assert (link.scheme, link.hostname, link.port) == (
            "http",
            "localhost",  # a secure context: the wallet's pages need WebCrypto
            int(published.published),
        ), f"{wallet.name}: PYBTC_EXPLORER_PUBLIC_URL={wallet.settings.explorer_url}"


def test_browser_services_are_published(nodes: dict[str, dict[str, App]]) -> None:
    for roles in nodes.values():
        for role in ("explorer", "wallet"):
            assert compose.ports(roles[role].spec), f"{roles[role].name} is not published"


def test_one_image_for_everything(services: dict[str, dict[str, Any]]) -> None:
    images = {spec.get("image") for spec in services.values()}
    assert len(images) == 1, images
    assert None not in images, "a service without an image"
    assert not any("build" in spec for spec in services.values())


def test_the_readme_lists_every_published_port(services: dict[str, dict[str, Any]]) -> None:
    readme = (compose.DEPLOY / "README.md").read_text()
    for name, spec in services.items():
        for port in compose.ports(spec):
            assert port.published in readme, f"deploy/README.md does not say where {name} is"


def test_each_ledger_asks_its_own_miner(nodes: dict[str, dict[str, App]]) -> None:
    """GET /mine asks the node's miner over HTTP (never over the bus): the ledger names it."""
    for roles in nodes.values():
        ledger, miner = roles["ledger"], roles["miner"]
        assert "PYBTC_MINER_URL" in ledger.env, f"{ledger.name}: no PYBTC_MINER_URL"
        url = urlsplit(ledger.settings.miner_internal_url)
        assert (url.hostname, url.port) == (miner.name, miner.settings.miner_port), (
            f"{ledger.name}: PYBTC_MINER_URL={ledger.settings.miner_internal_url}"
        )
        # ...and the miner answers to that name (every service answers only to its names)
        assert AllowedHosts.from_settings(miner.settings).allows(url.hostname or ""), (
            f"{miner.name} would answer 421 host-not-allowed to its ledger's GET /mine"
        )


def test_the_bus_requires_a_password(apps: list[App], services: dict[str, dict[str, Any]]) -> None:
    """Every service's bus URL carries the operator's REDIS_PASSWORD, which the redis container
    requires (read from stdin, not shown on a command line), and there is no default for it."""
    raw = compose.raw_text()
    assert "${REDIS_PASSWORD:?" in raw
    assert "${REDIS_PASSWORD:-" not in raw
    for app in apps:
        assert urlsplit(app.env["PYBTC_REDIS_URL"]).password == compose.STAND_IN, app.name
    redis = services["redis"]
    script = " ".join(compose.command(redis))
    assert "requirepass $$REDISCLI_AUTH" in script
    assert "redis-server -" in script
    assert redis["environment"]["REDISCLI_AUTH"] == compose.STAND_IN


def test_the_bus_has_no_command_that_writes_files(services: dict[str, dict[str, Any]]) -> None:
    """The compose stack's Redis renames to nothing the commands `pybtc up`'s does (CONFIG,
    SAVE, REPLICAOF, MODULE, …): whoever holds the password can publish, nothing more."""
    script = "\n".join(compose.command(services["redis"]))
    renamed = re.findall(r'^\s*rename-command (\S+) ""\s*$', script, flags=re.MULTILINE)
    assert sorted(renamed) == sorted(DISABLED_COMMANDS), renamed
