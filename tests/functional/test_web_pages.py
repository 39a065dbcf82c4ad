"""A whole node (`pybtc up`, regtest, its own miner) against web pages on the visitor's machine.

The two attacks of issue 16 §6, with the headers a browser sends: a page of another site that
asks for `GET /mine` (no-cors: it cannot read the answer, but a block would be mined), and a
DNS-rebinding page at `rebind.example:<port>` (a name resolving to 127.0.0.1) that reads the
ledger, the miner, the explorer and the wallet, and asks the wallet for a CSRF token and a
faucet payment. Every such request is refused with its reason and the chain does not move;
the same requests as a program sends them (python `requests`, no browser headers) work, and so
do the node's own names and `PYBTC_ALLOWED_HOSTS`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.chainutil import test_key
from tests.upnode import UpNode

REBIND = "rebind.example"
EXTRA = "node.example"
CROSS_SITE = {
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
    "Sec-Fetch-Dest": "empty",
}
SAME_SITE = CROSS_SITE | {"Sec-Fetch-Site": "same-site"}
ALICE = test_key(1)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpNode]:
    started = UpNode(tmp_path_factory.mktemp("web-pages") / "data", PYBTC_ALLOWED_HOSTS=EXTRA)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def height(node: UpNode) -> int:
    value = node.get("/status")["height"]
    assert isinstance(value, int)
    return value


def services(node: UpNode) -> dict[str, int]:
    return {
        "ledger": node.port,
        "miner": node.miner_port,
        "explorer": node.explorer_port,
        "wallet": node.wallet_port,
    }


@pytest.mark.parametrize(
    "browser",
    [
        CROSS_SITE,  # fetch("http://127.0.0.1:5000/mine", {mode: "no-cors"}), <img src>
        SAME_SITE,  # the same from a page on another port of loopback
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
    ],
)
def test_a_page_of_another_site_cannot_mine(node: UpNode, browser: dict[str, str]) -> None:
    before = height(node)
    resp = requests.get(f"{node.url}/mine", headers=browser, timeout=30)
    assert (resp.status_code, resp.json()["reason"]) == (403, "cross-site"), resp.text
    assert height(node) == before


def test_the_tutorials_get_mine_still_mines(node: UpNode) -> None:
    before = height(node)
    resp = requests.get(f"{node.url}/mine", timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json()["message"] == "new block found"
    assert height(node) == before + 1


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("ledger", "/status"),
        ("ledger", "/chain"),
        ("ledger", "/mine"),
        ("miner", "/status"),
        ("explorer", "/"),
        ("explorer", "/api/summary"),
        ("wallet", "/"),
        ("wallet", "/api/csrf"),
    ],
)
def test_a_rebinding_page_reads_nothing(node: UpNode, service: str, path: str) -> None:
    before = height(node)
    port = services(node)[service]
    resp = requests.get(
        f"http://127.0.0.1:{port}{path}", headers={"Host": f"{REBIND}:{port}"}, timeout=30
    )
    assert resp.status_code == 421, resp.text
    assert "host-not-allowed" in resp.text
    assert "pybtc_csrf" not in resp.cookies
    assert height(node) == before


def test_a_rebinding_page_gets_no_faucet_payment(node: UpNode) -> None:
    """With a token got from the wallet's own name, and Origin and Host both the page's."""
    http = requests.Session()
    wallet = node.wallet_url
    token = http.get(f"{wallet}/api/csrf", timeout=30).json()["token"]
    page = f"{REBIND}:{node.wallet_port}"
    resp = http.post(
        f"{wallet}/api/faucet",
        json={"address": ALICE.address},
        headers={"Host": page, "Origin": f"http://{page}", "X-CSRF-Token": token},
        timeout=30,
    )
    assert (resp.status_code, resp.json()["reason"]) == (421, "host-not-allowed"), resp.text
    assert node.get("/mempool")["transactions"] == []


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]", EXTRA])
def test_every_service_answers_its_own_names(node: UpNode, name: str) -> None:
    for service, port in services(node).items():
        resp = requests.get(
            f"http://127.0.0.1:{port}/healthz", headers={"Host": f"{name}:{port}"}, timeout=30
        )
        assert resp.status_code == 200, (service, resp.text)
        assert resp.json()["service"] == service
