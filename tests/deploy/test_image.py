"""The image, checked without Docker: deploy/Dockerfile, .dockerignore, deploy/healthcheck.py.

The Dockerfile is read as text: its base is a build argument, it installs from the wheelhouse
only (so `docker build --network none` works), runs as a user that is not root and has a health
check, the script that the health check and the compose file both run. The build context's
.dockerignore is matched the way Docker matches it, to see that the image gets what it copies
and nothing else. The health check script is run against a stand-in /healthz.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.cli import SERVICES
from services.common.settings import Settings
from tests.deploy import compose

DOCKERFILE = compose.DEPLOY / "Dockerfile"
DOCKERIGNORE = compose.ROOT / ".dockerignore"
HEALTHCHECK_SCRIPT = compose.DEPLOY / "healthcheck.py"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped); stage -1 is
    before the first FROM."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    found, stage = [], -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(keyword.upper(), args.strip(), stage))
    return found


def final_stage() -> list[Instruction]:
    every = instructions()
    return [i for i in every if i.stage == every[-1].stage]


def json_args(instruction: Instruction) -> list[str]:
    """The exec-form (JSON array) arguments of CMD, HEALTHCHECK CMD and the like."""
    start = instruction.args.index("[")
    words = json.loads(instruction.args[start:])
    assert isinstance(words, list)
    return [str(w) for w in words]


# -- the Dockerfile ------------------------------------------------------------------------------


def test_the_base_image_is_a_build_argument() -> None:
    every = instructions()
    args = [i.args for i in every if i.keyword == "ARG" and i.stage == -1]
    assert any(a.startswith("BASE=") for a in args), "ARG BASE=<default> before the first FROM"
    froms = [i.args for i in every if i.keyword == "FROM"]
    assert froms
    assert all(f.split()[0] == "${BASE}" for f in froms), froms


def test_it_installs_from_the_wheelhouse_only() -> None:
    """`docker build --network none`: pip looks nowhere but /wheels."""
    runs = " ".join(i.args for i in instructions() if i.keyword == "RUN")
    installs = re.findall(r"pip install [^&;]*", runs)
    assert installs, "no pip install"
    for install in installs:
        assert "--no-index" in install, install
        assert "--find-links /wheels" in install, install
    copies = [i.args.split() for i in instructions() if i.keyword == "COPY"]
    assert ["deploy/wheels/", "/wheels/"] in copies
    for fetch in ("curl ", "wget ", "pip download", "git clone"):
        assert fetch not in runs, f"the build fetches with {fetch.strip()}"


def test_the_final_image_runs_as_a_user_that_is_not_root() -> None:
    users = [i.args for i in final_stage() if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


def test_the_final_image_keeps_no_build_inputs() -> None:
    """Wheels and sources are copied into the build stage only; the run stage gets the venv."""
    for instruction in final_stage():
        if instruction.keyword == "COPY":
            words = instruction.args.split()
            assert words[0].startswith("--from=") or words[0] == "deploy/healthcheck.py", words


def test_the_health_check_runs_the_script_the_compose_file_runs() -> None:
    checks = [i for i in final_stage() if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "one HEALTHCHECK in the final stage"
    command = json_args(checks[0])
    assert command[0] == "python", command
    assert len(command) == 2, command
    script = command[1]
    copies = [i.args.split() for i in final_stage() if i.keyword == "COPY"]
    assert ["deploy/healthcheck.py", script] in copies, f"{script} is not copied into the image"
    services = compose.load()["services"]
    for name, spec in services.items():
        if compose.command(spec)[:1] == ["pybtc"]:
            assert spec["healthcheck"]["test"] == ["CMD", *command], name


def test_the_default_command_is_pybtc_serve() -> None:
    (cmd,) = [i for i in final_stage() if i.keyword == "CMD"]
    words = json_args(cmd)
    assert words[:2] == ["pybtc", "serve"], words
    assert words[2] in SERVICES, words


def test_the_image_exposes_every_service_port() -> None:
    exposed = {int(p) for i in final_stage() if i.keyword == "EXPOSE" for p in i.args.split()}
    defaults = Settings()
    assert {getattr(defaults, f"{role}_port") for role in SERVICES} <= exposed


# -- the build context ---------------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `**/` any directories; `*`, `?`, `[...]` in a name."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i:]:
            end = glob.index("]", i) + 1
            out.append(glob[i:end])
            i = end
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def ignored(path: str) -> bool:
    """Docker's rule: the last pattern that matches the path, or a directory above it, decides."""
    parents = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 2)]
    verdict = False
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        regex = _pattern(line.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in parents):
            verdict = exclude
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "pybtc/__init__.py",
        "services/cli.py",
        "services/node/openapi.yaml",
        "services/wallet/templates/base.html",
        "deploy/healthcheck.py",
        "deploy/wheels/redis-8.1.0-py3-none-any.whl",
    ],
)
def test_the_build_context_holds_what_the_image_copies(path: str) -> None:
    assert not ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "data/ledger-devnet.sqlite3",
        "tests/conftest.py",
        "pybtc.egg-info/PKG-INFO",
        "services/__pycache__/cli.cpython-311.pyc",
        "pybtc/__pycache__/x.pyc",
        "services/stray.pyc",
        "deploy/docker-compose.yml",
    ],
)
def test_the_build_context_leaves_out_the_rest(path: str) -> None:
    assert ignored(path)


def test_every_copied_source_is_in_the_build_context() -> None:
    for instruction in instructions():
        words = instruction.args.split()
        if instruction.keyword != "COPY" or words[0].startswith("--from="):
            continue
        for source in words[:-1]:
            assert not ignored(source.rstrip("/")), f"COPY {source}: left out by .dockerignore"
            if source != "deploy/wheels/":  # made by deploy/wheelhouse.sh
                assert (compose.ROOT / source).exists(), f"COPY {source}: no such file"


def test_the_wheelhouse_has_what_building_pybtc_needs() -> None:
    """deploy/wheelhouse.sh names pyproject's build requirements (the image builds pyBTC)."""
    pyproject = tomllib.loads((compose.ROOT / "pyproject.toml").read_text())
    script = (compose.DEPLOY / "wheelhouse.sh").read_text()
    for requirement in pyproject["build-system"]["requires"]:
        assert requirement in script, f"deploy/wheelhouse.sh does not download {requirement}"
    syntax = subprocess.run(["sh", "-n", str(compose.DEPLOY / "wheelhouse.sh")], check=False)
    assert syntax.returncode == 0


# -- the health check script ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pybtc_healthcheck", HEALTHCHECK_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Healthz(BaseHTTPRequestHandler):
    """Answers GET /healthz with the server's `status` and `body`."""

    server: Any

    def do_GET(self) -> None:
        payload = json.dumps(self.server.body).encode()
        self.send_response(self.server.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A /healthz on a free loopback port, which the ledger's port setting points at."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    server.status, server.body = 200, {"service": "ledger", "status": "ok", "checks": {}}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PYBTC_HOST", "0.0.0.0")
    monkeypatch.setenv("PYBTC_LEDGER_PORT", str(server.server_address[1]))
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_script_knows_every_service(healthcheck: ModuleType) -> None:
    assert tuple(healthcheck.SERVICES) == tuple(SERVICES)


@pytest.mark.parametrize(
    ("argv", "service"),
    [
        (["/opt/pybtc/bin/python3", "/opt/pybtc/bin/pybtc", "serve", "wallet", ""], "wallet"),
        (["pybtc", "serve", "ledger"], "ledger"),
        (["/sbin/docker-init", "--", "pybtc", "serve", "miner", ""], "miner"),
        (["redis-server", "--bind", "0.0.0.0"], None),
        (["pybtc", "serve"], None),
        (["pybtc", "serve", "redis"], None),
        ([], None),
    ],
)
def test_the_service_is_read_from_the_command(
    healthcheck: ModuleType, argv: list[str], service: str | None
) -> None:
    assert healthcheck.service_from_command(argv) == service


def test_the_command_comes_from_pid_1(healthcheck: ModuleType, tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/opt/pybtc/bin/python3\0/opt/pybtc/bin/pybtc\0serve\0explorer\0")
    assert healthcheck.service_from_command(healthcheck.pid1_command(cmdline)) == "explorer"
    assert healthcheck.pid1_command(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:8081/healthz"),
        ("::", "http://[::1]:8081/healthz"),
        ("10.1.2.3", "http://10.1.2.3:8081/healthz"),
    ],
)
def test_the_url_is_the_services_own(healthcheck: ModuleType, host: str, url: str) -> None:
    assert healthcheck.healthz_url("wallet", Settings(host=host)) == url


def test_healthy_when_the_service_answers(healthcheck: ModuleType, stand_in: Any) -> None:
    assert healthcheck.main(["ledger"]) == 0
    stand_in.body = {"service": "ledger", "status": "degraded", "checks": {}}
    assert healthcheck.main(["ledger"]) == 0  # the bus is down: the ledger still works


def test_unhealthy_otherwise(
    healthcheck: ModuleType, stand_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in.status = 503
    assert healthcheck.main(["ledger"]) == 1
    stand_in.status = 200
    assert healthcheck.main(["miner"]) == 1  # nothing on the miner's port
    monkeypatch.setenv("PYBTC_MINER_PORT", str(stand_in.server_address[1]))
    assert healthcheck.main(["miner"]) == 1  # the ledger answers on the miner's port
    assert healthcheck.main(["nonsense"]) == 1


def test_the_script_runs_as_docker_runs_it(stand_in: Any) -> None:
    run = [sys.executable, str(HEALTHCHECK_SCRIPT), "ledger"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("healthy: http://127.0.0.1:")


def test_smoke_script_parses_and_cleans_up_after_itself() -> None:
    """deploy/smoke.sh (run for real by CI) is valid bash and tears down what it starts."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "smoke.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    text = script.read_text()
    assert "trap cleanup EXIT" in text
    assert "down --volumes --remove-orphans" in text
    assert "--network none" in text
