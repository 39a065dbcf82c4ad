"""The node's own key: the miner's reward key kept in the data dir, which the faucet spends.

`<data dir>/miner-<network>.key` holds 64 hex digits (mode 600), made once and kept across
restarts, so the coins a node mines stay spendable (the tutorial's miner id was a fresh uuid4
on every start).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pybtc import PrivateKey
from services.common.settings import Settings

logger = logging.getLogger(__name__)


def node_key_path(settings: Settings) -> Path:
    return settings.data_dir / f"miner-{settings.network}.key"


def load_or_create_node_key(settings: Settings) -> PrivateKey:
    """The node's key, made on first use (two services starting at once get the same key)."""
    path = node_key_path(settings)
    if not path.exists():
        key = PrivateKey.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic, and refuses to replace a key another service made
            logger.info("new node key path=%s address=%s", path, key.address)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return PrivateKey.from_hex(path.read_text().strip())
