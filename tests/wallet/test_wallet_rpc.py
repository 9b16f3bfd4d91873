"""The embedded chain served as JSON-RPC on 127.0.0.1, reached from another process."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from wallet.chain import ChainClient
from wallet.chainerrors import InsufficientFunds, RpcUnavailable, WrongChain
from wallet.devnet import DevnetChain, start_embedded_chain
from wallet.registry import Registry, RegistryParams
from wallet.signer import LocalSigner

ETHER = 10**18
pytestmark = pytest.mark.network

CHILD = textwrap.dedent(
    """
    import json, sys
    from wallet.chain import ChainClient
    from wallet.chainerrors import RevertError
    from wallet.registry import Registry
    from wallet.signer import LocalSigner
    url, registry, key, chain_id = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    signer = LocalSigner(key)
    client = ChainClient.connect(url, signer, expected_chain_id=chain_id, receipt_timeout=10)
    reg = Registry(client, registry)
    reg.register(2 * 10**18)
    try:
        reg.post_epoch(reg.current_epoch(), b"\\x01" * 32, b"\\x02" * 32, 1)
        revert = None
    except RevertError as exc:
        revert = exc.name
    print(json.dumps({"chain_id": client.chain_id, "epoch": reg.current_epoch(), "revert": revert}))
    """
)


@pytest.fixture(scope="module")
def devnet() -> Iterator[DevnetChain]:
    validator = LocalSigner.create()
    with start_embedded_chain([validator], params=RegistryParams(epoch_length=3600)) as chain:
        yield chain


@pytest.mark.slow
def test_another_process_transacts_through_the_served_json_rpc(devnet: DevnetChain) -> None:
    child = LocalSigner.create()
    devnet.fund(child.address, 10 * ETHER)
    args = [
        devnet.rpc_url,
        devnet.deployment.registry,
        "0x" + child.export_private_key().hex(),
        str(devnet.chain_id),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"chain_id": devnet.chain_id, "epoch": 0, "revert": "EpochNotOpen"}
    info = devnet.registry().validator(child.address)  # the same chain, seen in process
    assert info.registered and info.stake == 2 * ETHER


def test_http_provider_in_process_sees_the_same_chain(devnet: DevnetChain) -> None:
    client = ChainClient.connect(devnet.rpc_url)
    assert client.chain_id == devnet.chain_id == 131277322940537
    reg = Registry(client, devnet.deployment.registry)
    assert reg.validator(devnet.validators[0]).registered
    assert [e["validator"] for e in reg.epoch_posts()] == []


def test_wrong_chain_id_is_refused(devnet: DevnetChain) -> None:
    with pytest.raises(WrongChain, match="chain id 131277322940537 but the network profile names 1"):
        ChainClient.connect(devnet.rpc_url, expected_chain_id=1)


def test_unreachable_endpoint_fails_after_retries() -> None:
    with pytest.raises(RpcUnavailable, match="unreachable"):
        ChainClient.connect("http://127.0.0.1:9", retries=1, retry_delay=0.01, rpc_timeout=1)


def test_insufficient_funds_says_fund_the_account(devnet: DevnetChain) -> None:
    poor = LocalSigner.create()
    reg = Registry(ChainClient.connect(devnet.rpc_url, poor), devnet.deployment.registry)
    with pytest.raises(InsufficientFunds, match="fund the account"):
        reg.register(ETHER)


def _post(url: str, body: bytes) -> tuple[int, object]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_server_answers_malformed_requests_with_json_rpc_errors(devnet: DevnetChain) -> None:
    status, answer = _post(devnet.rpc_url, b"{not json")
    assert status == 200 and answer["error"]["code"] == -32700  # type: ignore[index]
    _, answer = _post(devnet.rpc_url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sign"}).encode())
    assert answer["error"]["code"] == -32601  # type: ignore[index]
    _, answer = _post(devnet.rpc_url, b"[]")
    assert answer["error"]["code"] == -32600  # type: ignore[index]
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId", "params": []} for i in range(3)]
    _, answer = _post(devnet.rpc_url, json.dumps(batch).encode())
    assert [a["result"] for a in answer] == [hex(devnet.chain_id)] * 3  # type: ignore[union-attr]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(devnet.rpc_url, timeout=10)
    info.value.close()
    assert info.value.code == 405


def test_an_http_server_that_is_not_a_node_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{httpd.server_address[1]}"
            with pytest.raises(RpcUnavailable, match="cannot use the JSON-RPC endpoint"):
                ChainClient.connect(url, retries=0)
        finally:
            httpd.shutdown()
            thread.join()
