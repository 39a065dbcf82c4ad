"""The ledger's OpenAPI document: valid, complete, the same in docs/, and true to real answers.

`services/node/openapi.yaml` is validated as OpenAPI 3.1 with openapi-spec-validator; its paths
and methods are compared with the routes the real app registers (both ways); its reason codes
with every code the code base can answer; and real responses of a real ledger (status,
transactions, addresses, chain, blocks, mining, errors) are validated with jsonschema against
the schema the document declares for that path, method and status.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from pybtc import COIN, REGTEST, Block, Reason, Transaction
from pybtc.mining import build_block, mine_block
from services.common.web import _HTTP_REASONS
from services.node.app import create_app
from services.node.network import REGISTRATION_REASONS
from services.node.views import TOO_MANY_BAD_BLOCKS
from tests.chainutil import test_key
from tests.service.ledgerutil import ledger_settings, mine, send

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "services" / "node" / "openapi.yaml"
DOCS_PATH = ROOT / "docs" / "api.yaml"
BASE_URI = "urn:pybtc:ledger-api"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def load_document() -> dict[str, Any]:
    document = yaml.safe_load(SPEC_PATH.read_text())
    assert isinstance(document, dict)
    return document


DOCUMENT = load_document()


def test_document_is_valid_openapi_31() -> None:
    """The document validates as OpenAPI 3.1 (openapi-spec-validator)."""
    assert DOCUMENT["openapi"].startswith("3.1.")
    validate(DOCUMENT)


def test_docs_api_yaml_is_the_same_document() -> None:
    """docs/api.yaml is a relative symlink to the served document, so they cannot drift."""
    assert DOCS_PATH.is_symlink()
    assert str(DOCS_PATH.readlink()) == "../services/node/openapi.yaml"
    assert DOCS_PATH.resolve() == SPEC_PATH
    assert DOCS_PATH.read_bytes() == SPEC_PATH.read_bytes()


def test_openapi_yaml_ships_in_the_package() -> None:
    """GET /openapi.yaml reads the file as package data (importlib.resources), so a wheel or a
    non-editable install must contain it: a package-data pattern must match "openapi.yaml".

    pyproject.toml's [tool.setuptools.package-data] lists html, css, js, json, svg and py.typed
    only; outside an editable checkout GET /openapi.yaml raises FileNotFoundError (a 500).
    """
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = [
        pattern
        for patterns in config["tool"]["setuptools"]["package-data"].values()
        for pattern in patterns
    ]
    assert any(fnmatch.fnmatch("openapi.yaml", p) for p in patterns), patterns


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_route_is_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    """The routes registered in the real app (HEAD aside) and the document's paths and methods
    are the same set."""
    app = create_app(ledger_settings(tmp_path))
    registered = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = documented_operations()
    assert registered - documented == set(), "routes missing from the document"
    assert documented - registered == set(), "documented routes the app does not have"


def test_every_operation_documents_its_refusals() -> None:
    """Each operation has a summary, a success response, and a default Error response; every
    path parameter is declared."""
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert operation.get("summary"), (method, path)
            assert "default" in responses, (method, path)
            if path != "/mine":
                assert any(code.startswith("2") for code in responses), (method, path)
            for name in re.findall(r"{(\w+)}", path):
                params = [resolve(p) for p in operation.get("parameters", [])]
                assert any(p["in"] == "path" and p["name"] == name for p in params), name


def emitted_reason_codes() -> set[str]:
    """Every reason code the services and pybtc can answer with."""
    codes = {str(reason) for reason in Reason} | set(_HTTP_REASONS.values()) | {"internal"}
    codes |= set(REGISTRATION_REASONS)  # raised as ServiceError(400, first["reason"], ...)
    codes.add(TOO_MANY_BAD_BLOCKS)  # the reason of a ClientQuota's 429
    ledger_sources = [
        *(ROOT / "services" / "node").rglob("*.py"),
        ROOT / "services/common/web.py",
        ROOT / "services/common/origins.py",
    ]
    for source in ledger_sources:
        codes |= set(re.findall(r'ServiceError\(\s*\d+,\s*"([a-z-]+)"', source.read_text()))
    return codes


def test_every_reason_code_is_documented() -> None:
    """The ReasonCode enum is exactly the codes pybtc.errors.Reason and the services raise."""
    (listed,) = (
        option["enum"]
        for option in DOCUMENT["components"]["schemas"]["ReasonCode"]["anyOf"]
        if "enum" in option
    )
    assert len(listed) == len(set(listed))
    emitted = emitted_reason_codes()
    assert emitted - set(listed) == set(), "codes missing from the document"
    assert set(listed) - emitted == set(), "documented codes nothing raises"


# -- real responses against their declared schemas ----------------------------------------------


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (one level is all the document uses outside schemas)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    assert isinstance(target, dict)
    return target


def pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def response_validator(path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for the JSON schema declared for `status` (else `default`) of an operation."""
    operation = DOCUMENT["paths"][path].get(method)
    if operation is None:  # a 405: answered like every refusal the document lists as default
        operation = {"responses": {"default": {"$ref": "#/components/responses/Error"}}}
    responses = operation["responses"]
    code = str(status) if str(status) in responses else "default"
    response = resolve(responses[code])
    assert "application/json" in response["content"], (path, method, code)
    if "$ref" in responses[code]:
        location = responses[code]["$ref"].removeprefix("#")
    else:
        location = pointer("paths", path, method, "responses", code)
    schema = {"$ref": f"{BASE_URI}#{location}{pointer('content', 'application/json', 'schema')}"}
    registry = Registry().with_resource(BASE_URI, DRAFT202012.create_resource(DOCUMENT))
    return Draft202012Validator(schema, registry=registry)


def schema_validator(name: str) -> Draft202012Validator:
    registry = Registry().with_resource(BASE_URI, DRAFT202012.create_resource(DOCUMENT))
    ref = f"{BASE_URI}#{pointer('components', 'schemas', name)}"
    return Draft202012Validator({"$ref": ref}, registry=registry)


class Checker:
    """Sends requests and validates each JSON answer against the document."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.checked: set[tuple[str, str, int]] = set()

    async def __call__(
        self, method: str, url: str, path: str, status: int, body: Any = None
    ) -> Any:
        resp = await self.client.request(method, url, json=body)
        answer = await resp.json()
        assert resp.status == status, answer
        errors = list(response_validator(path, method.lower(), status).iter_errors(answer))
        assert not errors, f"{method} {url} {status}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message}" for e in errors
        )
        self.checked.add((method, path, status))
        return answer


async def test_real_responses_match_their_schemas(ledger_client: TestClient) -> None:
    """Answers of a real ledger validate against the schema the document declares for their
    path, method and status: the tutorial's endpoints, blocks, pending and confirmed
    transactions, addresses, mempool, status, logs, mining, health, and refusals."""
    check = Checker(ledger_client)
    miner, alice = test_key(0), test_key(1)
    await check("GET", "/", "/", 200)
    await check("GET", "/status", "/status", 200)
    template = await check(
        "GET", f"/mining/template?address={miner.address}", "/mining/template", 200
    )
    solved = mine_block(Block.from_dict(template["block"]))
    assert solved is not None
    await check("POST", "/mining/submit", "/mining/submit", 201, solved.to_dict())
    await mine(ledger_client, miner.address, 2)

    tx = Transaction.create(
        miner, alice.address, COIN, fee=1_000, nonce=0, timestamp=0, network_id="pybtc-regtest"
    )
    await check("POST", "/transactions/new", "/transactions/new", 201, tx.to_dict())
    await check("POST", "/transactions/new", "/transactions/new", 201, tx.to_dict())
    await check("GET", f"/tx/{tx.txid}", "/tx/{txid}", 200)
    await check("GET", "/mempool", "/mempool", 200)
    await check("GET", "/mempool/blocks", "/mempool/blocks", 200)
    await check("GET", "/fees", "/fees", 200)
    await check("GET", f"/address/{alice.address}", "/address/{address}", 200)
    await check("GET", f"/address/{miner.address}/history", "/address/{address}/history", 200)
    await mine(ledger_client, miner.address)
    await check("GET", f"/tx/{tx.txid}", "/tx/{txid}", 200)
    await check("GET", f"/address/{miner.address}", "/address/{address}", 200)
    await check("GET", f"/address/{alice.address}/history", "/address/{address}/history", 200)
    await check("GET", "/chain", "/chain", 200)
    await check("GET", "/chain?format=headers&start=2&limit=2", "/chain", 200)
    await check("GET", "/chain?start=99", "/chain", 200)
    await check("GET", "/blocks", "/blocks", 200)
    await check("GET", f"/blocks/{solved.hash}", "/blocks/{hash}", 200)
    path_h = "/blocks/height/{height}"
    await check("GET", "/blocks/height/1", path_h, 200)
    await check("GET", "/healthz", "/healthz", 200)
    await check("GET", "/reorgs", "/reorgs", 200)

    status, body, refused = await send(ledger_client, miner, alice.address, COIN, fee=1)
    assert (status, body["reason"]) == (400, "fee-too-low")
    await check("GET", "/rejections", "/rejections", 200)
    await check("GET", f"/rejections?id={refused.txid}", "/rejections", 200)
    await check("GET", "/rejections?id=XYZ", "/rejections", 400)
    await check("POST", "/transactions/new", "/transactions/new", 400, {"sender": "x"})
    await check("POST", "/transactions/new", "/transactions/new", 409, tx.to_dict())
    await check("POST", "/mining/submit", "/mining/submit", 400, solved.to_dict())
    await check("GET", "/mine", "/mine", 503)
    await check("GET", "/tx/" + "00" * 32, "/tx/{txid}", 404)
    await check("GET", "/blocks/XYZ", "/blocks/{hash}", 400)
    await check("GET", "/blocks/height/99", path_h, 404)
    await check("GET", "/address/Pnope", "/address/{address}", 400)
    await check("GET", "/chain?limit=0", "/chain", 400)
    await check("DELETE", "/status", "/status", 405)

    # a reorg, so that /reorgs has an entry: two blocks on the parent of the tip
    fork = Block.from_dict((await check("GET", "/blocks/height/4", path_h, 200))["block"])
    for _ in range(2):
        side = build_block(
            REGTEST,
            fork.header,
            bits=fork.header.bits,
            transactions=(),
            miner_address=alice.address,
            timestamp=fork.timestamp + 1,
        )
        mined = mine_block(side)
        assert mined is not None
        await check("POST", "/mining/submit", "/mining/submit", 201, mined.to_dict())
        fork = mined
    (reorg,) = (await check("GET", "/reorgs", "/reorgs", 200))["reorgs"]
    assert reorg["requeued"] == [tx.txid]
    await check("GET", f"/tx/{tx.txid}", "/tx/{txid}", 200)

    await check("GET", "/blocks/tree", "/blocks/tree", 200)
    await check("GET", "/nodes", "/nodes", 200)
    await check("POST", "/nodes/register", "/nodes/register", 400, {"nodes": "ftp://x:1"})
    resolved = await check("GET", "/nodes/resolve", "/nodes/resolve", 200)
    assert resolved["message"] == "Our chain is authoritative"
    await check("POST", "/nodes/resolve", "/nodes/resolve", 200, {})

    json_operations = documented_operations() - {("GET", "/openapi.yaml"), ("GET", "/metrics")}
    assert json_operations <= {(method, path) for method, path, _ in check.checked}


async def test_metrics_and_document_content_types(ledger_client: TestClient) -> None:
    """/metrics and /openapi.yaml answer the (non-JSON) media types the document declares, and
    the served document is the file."""
    for path, media in (("/metrics", "text/plain"), ("/openapi.yaml", "application/yaml")):
        resp = await ledger_client.get(path)
        assert resp.status == 200
        assert resp.content_type == media
        assert media in DOCUMENT["paths"][path]["get"]["responses"]["200"]["content"]
    served = await (await ledger_client.get("/openapi.yaml")).text()
    assert served == SPEC_PATH.read_text()


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "TransactionSubmission",
            [
                Transaction.create(
                    test_key(0),
                    test_key(1).address,
                    COIN,
                    fee=1_000,
                    nonce=0,
                    timestamp=0,
                    network_id=REGTEST.network_id,
                ).to_dict()
                | {"type": "sharing"}
            ],
            [{"amount": 1.5}, {"amount": "5"}, {"amount": -1}, {"fee": True}, {"memo": "x"}],
        ),
        (
            "BlockSubmission",
            [
                REGTEST.genesis.to_dict(),
                {k: v for k, v in REGTEST.genesis.to_dict().items() if k != "hash"},
            ],
            [{"bits": 2**32}, {"index": 0}, {"transactions": {}}, {"extra": 1}],
        ),
        (
            "Block",
            [REGTEST.genesis.to_dict()],
            [{"hash": "AB" * 32}, {"nonce": 1.5}, {"transactions": []}],
        ),
    ],
)
def test_request_schemas_describe_what_the_node_accepts(
    name: str, good: list[dict[str, Any]], bad: list[dict[str, Any]]
) -> None:
    """The request schemas accept real transactions and blocks and refuse what the node
    refuses: floats, strings and negatives as amounts, booleans, unknown fields."""
    validator = schema_validator(name)
    for instance in good:
        validator.validate(instance)
    for change in bad:
        with pytest.raises(SchemaError):
            validator.validate(good[0] | change)
