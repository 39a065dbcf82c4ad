"""The bus's password: made once and kept in a file, and kept out of log lines.

`pybtc up` gives its embedded Redis (services/common/embedded_redis.py) the password kept in
`<data dir>/redis/password`, so that only the node's own services, which get it inside
PYBTC_REDIS_URL, can publish on the bus (DESIGN.md §6). Even they get no command that
reconfigures the server or writes files where it is told (`DISABLED_COMMANDS`): with CONFIG
and SAVE, or REPLICAOF and MODULE, whoever has the password could write files as the node's
user or load code into the server; the bus needs none of them.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

PASSWORD_FILENAME = "password"  # noqa: S105 - a file name, not a password

DISABLED_COMMANDS = (
    "CONFIG",
    "DEBUG",
    "MODULE",
    "REPLICAOF",
    "SLAVEOF",
    "MIGRATE",
    "SAVE",
    "BGSAVE",
    "BGREWRITEAOF",
    "ACL",
)
"""Renamed to nothing in every bus Redis pyBTC starts (and in the compose stack's)."""


def server_config(password: str) -> str:
    """The config a bus redis-server reads from stdin: the password (if any), the commands it
    lacks."""
    lines = [f"requirepass {password}"] if password else []
    lines += [f'rename-command {command} ""' for command in DISABLED_COMMANDS]
    return "\n".join(lines) + "\n"


def load_or_create_password(path: str | os.PathLike[str]) -> str:
    """The password kept in `path`; made (random, 256 bits) and written with mode 600 if the
    file does not exist yet, so a restart finds the same one. An existing file is made 600."""
    target = Path(path)
    try:
        password = target.read_text().strip()
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(32)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return load_or_create_password(target)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        logger.info("redis password made path=%s", target)
        return password
    if target.stat().st_mode & 0o077:  # made or copied by hand: others may not read it
        target.chmod(0o600)
    if not password:
        raise ValueError(f"the redis password file {target} is empty; delete it to get a new one")
    return password


def redacted_url(url: str) -> str:
    """`url` with any password replaced by `***`, for log lines and tables."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@" + netloc.rpartition("@")[2]
    query = "&".join(
        "password=***" if item.startswith("password=") else item for item in parts.query.split("&")
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
