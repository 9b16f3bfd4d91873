"""Real gossip between py-libp2p hosts on 127.0.0.1: delivery, first-hop rejection, bans."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from p2p_netutil import commitment, connect, make_service, start, wait_for

from p2p.events import MessageReceived, MessageRejected, PeerBanned
from p2p.service import P2PService
from p2p.validation import topic
from protocol.encoding import encode
from protocol.signing import SignedMessage
from wallet.signer import LocalSigner

pytestmark = pytest.mark.network


class Watch:
    """What each node saw: delivered messages and rejections."""

    def __init__(self, nodes: list[P2PService]) -> None:
        self.received: dict[str, list[MessageReceived]] = {}
        self.rejected: dict[str, list[MessageRejected]] = {}
        self.banned: dict[str, list[PeerBanned]] = {}
        for node in nodes:
            self.add(node)

    def add(self, node: P2PService) -> None:
        me = node.peer_id.to_string()
        self.received[me], self.rejected[me], self.banned[me] = [], [], []
        node.bus.subscribe(lambda e, me=me: self.received[me].append(e), [MessageReceived])  # type: ignore[misc, arg-type]
        node.bus.subscribe(lambda e, me=me: self.rejected[me].append(e), [MessageRejected])  # type: ignore[misc, arg-type]
        node.bus.subscribe(lambda e, me=me: self.banned[me].append(e), [PeerBanned])  # type: ignore[misc, arg-type]

    def commitments_at(self, node: P2PService) -> set[str]:
        return {e.sender for e in self.received[node.peer_id.to_string()] if e.message_type == "Commitment"}


async def publish_raw(attacker: P2PService, data: bytes, name: str = "commitments") -> None:
    """Publish bytes as they are, skipping every check our own publish() makes."""
    await attacker.gossip.pubsub.publish(topic(name), data)


def bad_messages(attacker: P2PService, victim_signer: LocalSigner) -> list[tuple[str, bytes]]:
    """One message per rejection reason, all from ``attacker`` (bound to its own key)."""
    own = commitment(attacker.local.signer, label=7)
    honest_of_other = commitment(victim_signer, label=8)  # valid signature, but not the attacker's key
    forged = SignedMessage(commitment(attacker.local.signer, label=9).message, honest_of_other.signature)
    return [
        ("undecodable", b"\x00garbage"),
        ("oversize", encode(own) + b" " * 70_000),
        ("bad_signature", encode(forged)),
        ("misbound", encode(honest_of_other)),
        ("replay", encode(own)),  # sent twice below: the second copy is the replay
    ]


async def attack(attacker: P2PService, victim_signer: LocalSigner) -> list[str]:
    reasons = []
    for reason, data in bad_messages(attacker, victim_signer):
        if reason == "replay":
            await publish_raw(attacker, data)  # first copy is valid
            await trio.sleep(0.2)
        await publish_raw(attacker, data)
        reasons.append(reason)
        await trio.sleep(0.1)
    return reasons


async def build(nursery: trio.Nursery, root: Path, count: int,
                edges: list[tuple[int, int]]) -> list[P2PService]:
    nodes = [await start(nursery, make_service(root, f"n{i}")) for i in range(count)]
    for a, b in edges:
        await connect(nodes[a], nodes[b])
    return nodes


def test_three_nodes_deliver_valid_and_stop_invalid_at_the_first_hop(tmp_path: Path) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a, b, c = await build(nursery, tmp_path, 3, [(1, 0), (2, 1)])
            attacker = await start(nursery, make_service(tmp_path, "attacker", ban_threshold=5))
            watch = Watch([a, b, c, attacker])
            await connect(attacker, a)
            await trio.sleep(2.5)  # meshes form (1 s heartbeat) and identities spread

            await c.gossip.publish(commitment(c.local.signer))
            await wait_for(lambda: c.local.signer.address in watch.commitments_at(a), 5, "delivery to a")

            reasons = await attack(attacker, c.local.signer)
            await wait_for(lambda: bool(watch.banned[a.peer_id.to_string()]), 10, "the attacker's ban")
            await trio.sleep(0.5)

            me = attacker.peer_id.to_string()
            counted = a.reputation.reason_counts(me)
            assert counted == dict.fromkeys(reasons, 1), counted
            assert [e.reason for e in watch.rejected[a.peer_id.to_string()]] == reasons
            assert watch.banned[a.peer_id.to_string()][0].peer_id == me
            for far in (b, c):  # nothing invalid travelled past a
                assert watch.rejected[far.peer_id.to_string()] == []
            # Only the one valid commitment of the attacker (the first copy of "replay") went through.
            assert watch.commitments_at(c) >= {attacker.local.signer.address}
            assert sum(e.sender == attacker.local.signer.address
                       for e in watch.received[c.peer_id.to_string()]
                       if e.message_type == "Commitment") == 1
            await wait_for(lambda: not a.host.get_network().get_connections(attacker.peer_id), 5,
                           "the banned attacker's disconnection")
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_late_joiner_fetches_a_missed_identity(tmp_path: Path) -> None:
    """c lacks b's Identity (joined late, or forgot it): b's next message makes c ask for it."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a, b = await build(nursery, tmp_path, 2, [(1, 0)])
            await trio.sleep(2.0)  # b's Identity gossiped to a only
            c = await start(nursery, make_service(tmp_path, "c"))
            watch = Watch([c])
            await connect(c, a)
            await trio.sleep(1.5)
            c.peerbook.forget(b.peer_id.to_string())  # whether or not a replayed it to c on join
            await b.gossip.publish(commitment(b.local.signer))
            await wait_for(lambda: b.local.signer.address in watch.commitments_at(c), 6, "delivery to c")
            assert c.peerbook.address_of(b.peer_id.to_string()) == b.local.signer.address
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_own_invalid_publish_is_refused_locally(tmp_path: Path) -> None:
    from p2p.gossip import PublishRejected

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            (a,) = await build(nursery, tmp_path, 1, [])
            with pytest.raises(PublishRejected, match="misbound"):
                await a.gossip.publish(commitment(LocalSigner.create()))
            with pytest.raises(PublishRejected, match="stale"):
                await a.gossip.publish(commitment(a.local.signer, issued_at=1))
            nursery.cancel_scope.cancel()

    trio.run(main)


def line(n: int) -> list[tuple[int, int]]:
    return [(i + 1, i) for i in range(n - 1)]


def star(n: int) -> list[tuple[int, int]]:
    return [(i, 0) for i in range(1, n)]


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "edges", "first_hop"), [("line", line(10), 0), ("star", star(10), 5)])
def test_ten_nodes_every_valid_message_everywhere_invalid_nowhere(
    tmp_path: Path, shape: str, edges: list[tuple[int, int]], first_hop: int
) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nodes = await build(nursery, tmp_path, 10, edges)
            attacker = await start(nursery, make_service(tmp_path, "attacker", ban_threshold=5))
            watch = Watch([*nodes, attacker])
            await connect(attacker, nodes[first_hop])
            await trio.sleep(3.0)
            # Every Identity reaches every node (repeated gossip + ask-on-connect), 10 nodes + attacker.
            everyone = {n.peer_id.to_string(): i for i, n in enumerate([*nodes, attacker])}

            def missing() -> dict[int, list[int]]:
                return {i: sorted(everyone[p] for p in set(everyone) - set(n.peerbook.by_peer))
                        for i, n in enumerate(nodes) if len(n.peerbook) < 11}

            await wait_for(lambda: not missing(), 10, f"every Identity ({shape})", explain=missing)

            for node in nodes:
                await node.gossip.publish(commitment(node.local.signer))
                await trio.sleep(0.05)
            senders = {n.local.signer.address for n in nodes}

            def everyone_has_all() -> bool:
                return all(watch.commitments_at(n) >= senders - {n.local.signer.address} for n in nodes)

            await wait_for(everyone_has_all, 15, f"every commitment at every node ({shape})")

            await attack(attacker, nodes[1].local.signer)
            hop = nodes[first_hop].peer_id.to_string()
            await wait_for(lambda: bool(watch.banned[hop]), 10, "the attacker's ban at the first hop")
            await trio.sleep(1.0)
            assert {e.reason for e in watch.rejected[hop]} == {
                "undecodable", "oversize", "bad_signature", "misbound", "replay"}
            for i, node in enumerate(nodes):
                if i != first_hop:
                    assert watch.rejected[node.peer_id.to_string()] == [], f"node {i} saw an invalid message"
            nursery.cancel_scope.cancel()

    trio.run(main)

