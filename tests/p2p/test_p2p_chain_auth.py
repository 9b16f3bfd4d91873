"""Validator authorisation from the chain registry: the embedded EVM behind a real JSON-RPC socket,
read by ``node.core.RegistryValidators``, checked by ``p2p.validation.ChainAuthorizer`` inside real
libp2p hosts on 127.0.0.1."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from p2p_netutil import DOMAIN, connect, start, task_status, wait_for
from p2p_netutil import test_config as p2p_config

from node.core import RegistryValidators
from p2p.events import MessageReceived
from p2p.service import LocalPeer, P2PService
from p2p.validation import ChainAuthorizer, topic
from protocol.encoding import encode
from protocol.messages import ROLE_MINER, ROLE_VALIDATOR
from wallet.chain import ChainClient
from wallet.devchain import EmbeddedChain
from wallet.registry import Registry, RegistryParams, deploy
from wallet.rpcserver import RpcServer
from wallet.signer import LocalSigner

ETHER = 10**18
PARAMS = RegistryParams(epoch_length=3600, emission_per_epoch=1000 * ETHER, min_stake=ETHER,
                        unstake_delay=3600)


class Chain:
    """The embedded chain served over JSON-RPC, the registry deployed, two registered validators."""

    def __init__(self) -> None:
        self.chain = EmbeddedChain()
        self.governance, self.v1, self.v2, self.outsider, self.late = (LocalSigner.create() for _ in range(5))
        for signer in (self.governance, self.v1, self.v2, self.outsider, self.late):
            self.chain.fund(signer.address, 100 * ETHER)
        self.deployment = deploy(ChainClient.embedded(self.chain, self.governance), PARAMS)
        self.rpc = RpcServer(self.chain).start()
        for signer in (self.v1, self.v2):
            self.registry(signer).register(2 * ETHER)

    def registry(self, signer: LocalSigner | None = None) -> Registry:
        client = ChainClient.connect(self.rpc.url, signer, receipt_timeout=10.0)
        return Registry(client, self.deployment.registry)

    def reader(self, url: str | None = None) -> RegistryValidators:
        return RegistryValidators(url or self.rpc.url, self.deployment.registry, self.deployment.chain_id,
                                  rpc_timeout=2.0)


class Cable:
    """A TCP relay to the JSON-RPC server that can be cut: the chain as one node sees it (closing
    the server itself would leave the client's keep-alive connection served)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.url = ""
        self.scope = trio.CancelScope()

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            task_status.started()
            await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server)
            nursery.start_soon(self._pipe, server, client)

    @staticmethod
    async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        async for chunk in source:
            await sink.send_all(chunk)
        await sink.send_eof()

    def cut(self) -> None:
        self.scope.cancel()


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    env = Chain()
    yield env
    env.rpc.close()
    # The web3 clients keep their HTTP connections alive (and the server a thread per connection):
    # collected now, their sockets close here, not during a later test that counts sockets.
    gc.collect()
    deadline = time.monotonic() + 5.0
    while any(t.name.startswith("Thread-") and "process_request" in t.name for t in threading.enumerate()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def test_registry_reader_follows_stake(chain: Chain) -> None:
    """Registered with stake: in; a later registration: in; removed: out (validatorPage reads)."""
    reader = chain.reader()
    before = reader()
    assert chain.v1.address in before and chain.outsider.address not in before
    chain.registry(chain.late).register(ETHER)
    assert reader() == before | {chain.late.address}
    chain.registry(chain.governance).remove_validator(chain.late.address, "test")
    assert reader() == before


def test_registry_reader_bad_endpoint_raises() -> None:
    reader = RegistryValidators("http://127.0.0.1:9", "0x" + "11" * 20, rpc_timeout=1.0)
    with pytest.raises(Exception, match=r"JSON-RPC|unreachable|cannot use"):
        reader()


def _service(root: Path, name: str, signer: LocalSigner, roles: int, authorizer: Any) -> P2PService:
    config = p2p_config(validator_refresh=0.5, validator_recheck=0.2)
    return P2PService(config, root / name, DOMAIN, LocalPeer(signer, roles), authorizer=authorizer)


@pytest.mark.network
def test_chain_validators_over_gossip(chain: Chain, tmp_path: Path) -> None:
    """A registered validator's announcement reaches the miner; an unregistered signer's is refused
    (counted as unauthorized); a validator that unstakes is refused after the next read; with the
    chain unreachable the last set stays."""
    cable = Cable(int(chain.rpc.url.rsplit(":", 1)[1]))
    v1 = _service(tmp_path, "v1", chain.v1, ROLE_VALIDATOR, ChainAuthorizer(chain.reader(), refresh_s=30.0))
    v2 = _service(tmp_path, "v2", chain.v2, ROLE_VALIDATOR, ChainAuthorizer(chain.reader(), refresh_s=30.0))
    outsider = _service(tmp_path, "out", chain.outsider, ROLE_VALIDATOR, ChainAuthorizer(chain.reader()))
    received: list[MessageReceived] = []

    def announcements_from(signer: LocalSigner) -> int:
        return sum(1 for e in received if e.message_type == "TaskStatus" and e.sender == signer.address)

    async def raw(service: P2PService, signer: LocalSigner) -> None:
        await service.gossip.pubsub.publish(topic("tasks"), encode(task_status(signer)))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(cable.run)
            miner_auth = ChainAuthorizer(chain.reader(cable.url), refresh_s=0.5, recheck_s=0.2)
            miner = _service(tmp_path, "miner", LocalSigner.create(), ROLE_MINER, miner_auth)
            miner.bus.subscribe(received.append, [MessageReceived])  # type: ignore[arg-type]

            def refused() -> int:
                return miner.gossip.rejected_by_reason.get("unauthorized", 0)

            for node in (miner, v1, v2, outsider):
                await start(nursery, node)
            # start() waited for the first read of the set
            assert miner_auth.chain == {chain.v1.address.lower(), chain.v2.address.lower()}
            for node in (v1, v2, outsider):
                await connect(node, miner)

            def miner_heard_of() -> bool:  # each publisher knows the miner is on the tasks topic
                return all(miner.peer_id in n.gossip.pubsub.peer_topics.get(topic("tasks"), set())
                           for n in (v1, v2, outsider))

            await wait_for(miner_heard_of, 10, "the miner's subscription known to the publishers")

            await v1.gossip.publish(task_status(chain.v1))
            await wait_for(lambda: announcements_from(chain.v1) == 1, 10, "v1's announcement at the miner")

            await raw(outsider, chain.outsider)
            await wait_for(lambda: refused() == 1, 10, "the outsider's announcement refused",
                           lambda: miner.gossip.rejected_by_reason)
            assert announcements_from(chain.outsider) == 0
            outsider_id = outsider.peer_id.to_string()
            assert miner.reputation.rejections.get(outsider_id, 0) == 0  # perhaps registered since the read
            await wait_for(lambda: miner_auth.confirmed_outsider(chain.outsider.address), 10,
                           "a read after the refusal")
            await raw(outsider, chain.outsider)
            await wait_for(lambda: refused() == 2, 10, "the outsider refused again")
            assert miner.reputation.rejections.get(outsider_id, 0) == 1  # now it counts against the relay

            await trio.to_thread.run_sync(lambda: chain.registry(chain.v2).request_unstake(2 * ETHER))
            await wait_for(lambda: not miner_auth.is_validator(chain.v2.address), 10,
                           "v2 dropped after a read")
            await raw(v2, chain.v2)
            await wait_for(lambda: refused() == 3, 10, "v2's announcement refused after unstaking",
                           lambda: miner.gossip.rejected_by_reason)

            failures = miner_auth.failures
            cable.cut()
            await wait_for(lambda: miner_auth.failures > failures, 10, "a failed read with the chain down")
            assert miner_auth.is_validator(chain.v1.address) and miner_auth.last_error
            await v1.gossip.publish(task_status(chain.v1))
            await wait_for(lambda: announcements_from(chain.v1) == 2, 10,
                           "v1 still heard with the chain down")
            assert announcements_from(chain.v2) == 0
            for node in (miner, v1, v2, outsider):
                node.stop()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_chain_authorizer_refresh_rules() -> None:
    """Reads when due, early (rate-limited) for an unknown signer, keeps the set on failure, and
    always accepts the static list."""
    now = [0.0]
    answers: list[Any] = [["0xAa"], RuntimeError("node down"), ["0xBb"], ["0xBb"]]

    def fetch() -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    auth = ChainAuthorizer(fetch, static=["0xCC"], refresh_s=60.0, recheck_s=10.0, clock=lambda: now[0])
    assert auth.due() and not auth.is_validator("0xaa") and auth.is_validator("0xcc")
    assert auth.refresh() and auth.is_validator("0xAA") and not auth.due()
    now[0] = 5.0
    assert not auth.is_validator("0xbb")  # unknown: an early read is wanted, but not before recheck_s
    assert not auth.due() and not auth.confirmed_outsider("0xbb")  # not re-read yet: no penalty
    now[0] = 10.0
    assert auth.due()
    assert not auth.refresh()  # the chain fails: the last set stays
    assert auth.is_validator("0xaa") and auth.failures == 1 and "node down" in auth.last_error
    now[0] = 15.0
    assert not auth.due()  # the early request was used up by the failed read
    now[0] = 70.0
    assert auth.due() and auth.refresh()
    assert auth.is_validator("0xbb") and not auth.is_validator("0xaa")
    assert not auth.confirmed_outsider("0xaa")  # dropped by this read: refused since, not re-read
    now[0] = 131.0
    assert auth.refresh() and auth.confirmed_outsider("0xaa")  # a later read lacks it: penalised now
    assert not auth.confirmed_outsider("0xdd")  # never refused
    summary = auth.summary()
    assert summary["chain"] == 1 and summary["static"] == 1 and summary["error"] == ""


@pytest.mark.network
def test_node_with_both_roles_runs_one_host(chain: Chain, tmp_path: Path) -> None:
    """miner and validator plugged into one core share the p2p service the core adds for them,
    whose authorizer reads the registry named by the profile; its Identity carries both roles."""
    from node.config import load_config
    from node.core import NodeCore
    from node.profile import NetworkProfile
    from p2p.service import NodeP2P

    profile = NetworkProfile.new_devnet(chain.deployment.chain_id, chain.rpc.url, chain.deployment.registry,
                                        chain.deployment.token)
    config = load_config(path=tmp_path / "absent.toml", env={})
    config.node.data_dir, config.node.stop_timeout = str(tmp_path / "both"), 5.0
    profile.save(tmp_path / "network.json")
    config.node.network = str(tmp_path / "network.json")
    config.p2p.listen_addrs = ["/ip4/127.0.0.1/tcp/0"]
    config.validator.api_enabled = False
    core = NodeCore(config, chain.v1, log_to_file=False)
    validator, miner = core.plug_in("validator"), core.plug_in("miner")
    assert core.services() == ("p2p", "validator", "miner") and core.plug_in("p2p") is core.service("p2p")
    p2p = core.service("p2p")
    assert isinstance(p2p, NodeP2P)
    assert getattr(validator, "p2p", None) is p2p.p2p and getattr(miner, "p2p", None) is p2p.p2p
    assert isinstance(p2p.p2p.authorizer, ChainAuthorizer)
    core.start()
    try:
        assert p2p.p2p.authorizer.is_validator(chain.v1.address)  # read from the chain at start-up
        assert p2p.local.roles == ROLE_MINER | ROLE_VALIDATOR
    finally:
        core.stop()
