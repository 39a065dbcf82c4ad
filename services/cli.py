"""The `pybtc` command line: run a node, back it up, show network parameters, make keys, check
addresses."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from contextlib import closing
from importlib.metadata import version
from pathlib import Path

import click

from pybtc import NETWORKS, AddressError, PrivateKey, decode_address, format_amount, get_params
from pybtc.pow import bits_to_target, block_work
from services import devtools
from services.common.entry import load_settings
from services.common.logs import setup_logging
from services.common.node_key import node_key_path
from services.up import SERVICES as SERVICE_MODULES
from services.up import run_node
from services.wallet.cli import wallet

network_option = click.option(
    "--network",
    type=click.Choice(sorted(NETWORKS)),
    help="Which chain (default: PYBTC_NETWORK, else devnet).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("pybtc"), prog_name="pybtc")
def main() -> None:
    """pyBTC: a small but real proof-of-work cryptocurrency network.

    Each node is four services (ledger, miner, explorer, wallet) that coordinate over Redis.
    See README.md and docs/ for the protocol and how to run a node.
    """


UP_EPILOG = """\b
Ports (on PYBTC_HOST, 127.0.0.1 by default):
  ledger 5000, miner 5100, explorer 8080, wallet 8081 (PYBTC_LEDGER_PORT, ...).
  --port-offset N adds N to every one (--port-offset 10: ledger 5010, wallet 8091).
  With --nodes N, node K adds K-1 to the ledger and miner ports and 100 x (K-1) to the
  explorer and wallet ports: node 2's ledger is on 5001, its wallet on 8181.
  A port in use is an error before anything starts; it names a --port-offset that is free.

\b
Mining: devnet mines all the time; regtest mines when asked (GET /mine, pybtc mine N),
  or every SECONDS with --auto-mine SECONDS.

\b
Then, in another terminal:
  pybtc mine 10               mine 10 blocks now (regtest)
  pybtc faucet ADDRESS        pay test coins to ADDRESS from the node's key
  pybtc wallet new            make a wallet; pybtc wallet balance, pybtc wallet send ...
  The CLI commands read the same PYBTC_* settings (PYBTC_PORT_OFFSET too) as the node.

Ctrl-C (or SIGTERM) stops everything at any moment, during start-up too (exit code 0);
if pybtc up itself is killed, its services and Redis stop with it.
See docs/operations.md for every setting.
"""


@main.command(epilog=UP_EPILOG)
@network_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the node keeps its database (default: PYBTC_DATA_DIR, else ./data).",
)
@click.option("--fresh", is_flag=True, help="Delete the data dir first: start from genesis.")
@click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="How many whole nodes to run, registered with each other (data in <data dir>/nodeK).",
)
@click.option(
    "--bus",
    type=click.Choice(["shared", "per-node"]),
    default="shared",
    show_default=True,
    help="One embedded Redis for all nodes, or one each (then they gossip only over HTTP).",
)
@click.option(
    "--port-offset",
    type=click.IntRange(0, 10_000),
    default=None,
    help="Add N to every port of every node (default: PYBTC_PORT_OFFSET, else 0).",
)
@click.option(
    "--auto-mine",
    type=click.FloatRange(0, 86_400, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Mine a block every SECONDS by itself (on-demand mining: regtest).",
)
def up(
    network: str | None,
    data_dir: Path | None,
    fresh: bool,
    nodes: int,
    bus: str,
    port_offset: int | None,
    auto_mine: float | None,
) -> None:
    """Run a node (or --nodes N of them): an embedded Redis and each node's ledger, miner,
    explorer and wallet, until Ctrl-C.

    Settings come from PYBTC_* environment variables (PYBTC_LEDGER_PORT, PYBTC_HOST,
    PYBTC_REDIS_URL to use an existing Redis, ...); see docs/operations.md.
    """
    settings = load_settings()  # exit 2 naming a bad setting; warns of unknown ones
    if network:
        settings = settings.with_(network=network)
    if data_dir:
        settings = settings.with_(data_dir=data_dir)
    if port_offset is not None:  # instead of PYBTC_PORT_OFFSET, which from_env applied
        settings = settings.shifted(port_offset - settings.port_offset)
    if auto_mine is not None:
        if settings.mining_mode != "on-demand":
            raise click.UsageError(
                "--auto-mine needs on-demand mining (regtest, or PYBTC_MINER_MODE=on-demand); "
                f"{settings.network} mines all the time"
                if settings.network == "devnet"
                else "--auto-mine needs on-demand mining (regtest, or "
                f"PYBTC_MINER_MODE=on-demand); PYBTC_MINER_MODE={settings.miner_mode} "
                "mines all the time"
            )
        settings = settings.with_(auto_mine=auto_mine)
    setup_logging(settings.log_level, service="up")
    sys.exit(run_node(settings, fresh=fresh, echo=click.echo, nodes=nodes, bus=bus))


@main.command()
@click.argument("network", type=click.Choice(sorted(NETWORKS)), default="devnet")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def params(network: str, as_json: bool) -> None:
    """Show the consensus parameters and genesis block of NETWORK (default: devnet)."""
    p = get_params(network)
    genesis = p.genesis
    info = {
        "network": p.name,
        "network_id": p.network_id,
        "genesis_hash": genesis.hash,
        "genesis_time": genesis.timestamp,
        "genesis_bits": f"{genesis.header.bits:#010x}",
        "genesis_work": block_work(genesis.header.bits),
        "pow_limit": f"{bits_to_target(p.pow_limit_bits):064x}",
        "target_block_time_s": p.target_block_time,
        "retarget_interval": p.retarget_interval,
        "retarget_clamp": p.retarget_clamp,
        "no_retargeting": p.no_retargeting,
        "median_time_span": p.median_time_span,
        "max_future_block_time_s": p.max_future_block_time,
        "initial_subsidy": format_amount(p.initial_subsidy),
        "halving_interval": p.halving_interval,
        "max_block_transactions": p.max_block_transactions,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    width = max(len(k) for k in info)
    for key, value in info.items():
        click.echo(f"{key:<{width}}  {value}")


@main.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the private key (hex) to this file, readable by you only. "
    "Without it the private key is printed.",
)
def keygen(out: Path | None) -> None:
    """Make a new Ed25519 key and print its address."""
    key = PrivateKey.generate()
    if out is not None:
        if out.exists():
            raise click.ClickException(f"{out} exists; not overwriting a key file")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
        click.echo(f"private key written to {out} (mode 600)", err=True)
    else:
        click.echo(f"private_key  {key.hex()}")
        click.echo("keep the private key secret: whoever has it can spend the coins", err=True)
    click.echo(f"public_key   {key.public_key.hex()}")
    click.echo(f"address      {key.address}")


SERVICES = dict(SERVICE_MODULES)


@main.command()
@click.argument("service", type=click.Choice(list(SERVICES)))
def serve(service: str) -> None:
    """Run one SERVICE of a node in the foreground (what `pybtc up` and the compose stack run).

    Settings come from PYBTC_* environment variables; it needs a Redis (PYBTC_REDIS_URL) and,
    for all but the ledger, the ledger's URL (PYBTC_LEDGER_URL). See docs/operations.md.
    """
    import importlib

    settings = load_settings()
    every_address = settings.host in ("0.0.0.0", "::")  # noqa: S104 - a check, not a bind
    if every_address and not (settings.public_url and settings.node_id):
        click.echo(
            "warning: listening on every address without PYBTC_PUBLIC_URL and PYBTC_NODE_ID: "
            f"peers would be told {settings.ledger_public_url}",
            err=True,
        )
    importlib.import_module(f"{SERVICES[service]}.__main__").main(settings)


@main.command()
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@network_option
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The node's data dir (default: PYBTC_DATA_DIR, else ./data).",
)
def backup(destination: Path, network: str | None, data_dir: Path | None) -> None:
    """Copy a node's ledger database and key into DESTINATION, safely while it runs.

    The database is copied with SQLite's online backup (a consistent snapshot, even while the
    ledger writes) and the copy is checked with PRAGMA integrity_check; the node key
    (miner-<network>.key, which holds the mined coins) is copied with mode 600. To restore,
    stop the node and copy both files back into its data dir (docs/operations.md).
    """
    settings = load_settings()
    settings = settings.with_(
        network=network or settings.network, data_dir=data_dir or settings.data_dir
    )
    source = settings.db_path
    if not source.is_file():
        raise click.ClickException(f"no ledger database at {source}")
    if destination.exists() and any(destination.iterdir()):
        raise click.ClickException(f"{destination} is not empty; not overwriting a backup")
    destination.mkdir(parents=True, exist_ok=True)
    copy = destination / source.name
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(copy)) as dst:
        src.backup(dst)  # page by page; a write meanwhile restarts it from a fresh snapshot
        verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        tip = dst.execute("SELECT value FROM meta WHERE key = 'tip'").fetchone()
        height = dst.execute("SELECT MAX(height) FROM main_chain").fetchone()[0]
    if verdict != "ok":
        raise click.ClickException(f"the copy fails its integrity check: {verdict}")
    click.echo(f"ledger    {copy} (height {height}, tip {tip[0] if tip else '-'})")
    key = node_key_path(settings)
    if key.is_file():
        fd = os.open(destination / key.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.read_bytes())
        click.echo(f"node key  {destination / key.name} (mode 600: it spends the mined coins)")
    click.echo("integrity ok")


@main.command("check-address")
@click.argument("address")
def check_address(address: str) -> None:
    """Check ADDRESS: its characters, length, version and checksum."""
    try:
        payload = decode_address(address)
    except AddressError as exc:
        click.echo(f"invalid address: {exc.message}", err=True)
        sys.exit(2)
    click.echo(f"valid pyBTC address (key hash {payload.hex()})")


main.add_command(wallet)
main.add_command(devtools.mine)
main.add_command(devtools.faucet)

if __name__ == "__main__":  # pragma: no cover
    main()
