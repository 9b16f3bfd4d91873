"""Rounds end to end in one process: three honest miners, five kinds of bad or unlucky miner.

Honest A, B, C; N sends noise; X sends a scaled, perturbed copy of A's update; S joins in round 2
and always trains from the previous round's model; W trains on a shard of the other domain; L
leaves during round 2; D (a straggler) always answers after the deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from trainer.diloco.config import InnerConfig
from trainer.diloco.miner import DilocoMiner
from trainer.diloco.params import Params, eval_loss
from trainer.diloco.spec import RoundSpec
from trainer.diloco.world import SHARED_DATASETS, World, build_world
from validator.diloco.rounds import DilocoValidator, Participant, RoundConfig, RoundResult, run_rounds

pytestmark = pytest.mark.slow

ROUNDS = 3
CFG = RoundConfig(round_ms=60_000, inner=InnerConfig(inner_steps=8, batch_size=4))


def addr(n: int) -> str:
    return f"0x{n:040x}"


A, B, C, N, X, S, W, L, D = (addr(i) for i in range(1, 10))
HONEST = (A, B, C)
BAD = {N: "no_improvement", X: "copy", S: "stale", W: "wrong_shard", D: "late"}


class RecordingMiner(DilocoMiner):
    """Honest; keeps its last pseudo-gradient where the copier can see it."""

    last: Params

    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        self.last = super().pseudo_gradient(spec, global_params)
        return self.last


class NoiseMiner(DilocoMiner):
    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        gen = torch.Generator().manual_seed(spec.round)
        return {n: 0.01 * torch.randn(t.shape, generator=gen) for n, t in global_params.items()}


class CopyMiner(DilocoMiner):
    def __init__(self, address: str, victim: RecordingMiner, world: World) -> None:
        super().__init__(address, world.model, world.shards)
        self.victim = victim

    def pseudo_gradient(self, spec: RoundSpec, global_params: Params) -> Params:
        gen = torch.Generator().manual_seed(spec.round)
        # 1.5x the victim's update plus noise at 5 % of each tensor's spread
        return {n: 1.5 * t + 0.05 * t.std() * torch.randn(t.shape, generator=gen)
                for n, t in self.victim.last.items()}  # fmt: skip


class StaleMiner(DilocoMiner):
    """Trains from the model it fetched a round ago and names that model as its base."""

    def __init__(self, address: str, world: World) -> None:
        super().__init__(address, world.model, world.shards)
        self.old = world.params

    def contribute(self, spec: RoundSpec, global_params: Params) -> bytes:
        base, self.old = self.old, global_params
        return self.encode(spec, base, self.pseudo_gradient(spec, base))


class WrongShardMiner(DilocoMiner):
    def shard_for(self, spec: RoundSpec) -> int:
        own = spec.assignment[self.address]
        domains = self.shards.domains
        return next(i for i in range(len(domains)) if domains[i] != domains[own])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: the tiny model gains nothing from two, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent: the shared datasets sit beside the clone in CI")
    return build_world(tmp_path_factory.mktemp("diloco"), SHARED_DATASETS)


@pytest.fixture(scope="module")
def played(world: World) -> tuple[DilocoValidator, list[RoundResult]]:
    torch.manual_seed(0)
    v = DilocoValidator(world.model, dict(world.params), world.shards, world.val, CFG, b"validator secret")
    a = RecordingMiner(A, world.model, world.shards)
    honest = [Participant(a)] + [Participant(DilocoMiner(m, world.model, world.shards)) for m in (B, C)]
    bad = [
        Participant(NoiseMiner(N, world.model, world.shards)),
        Participant(CopyMiner(X, a, world)),
        Participant(StaleMiner(S, world), joins_at=2),
        Participant(WrongShardMiner(W, world.model, world.shards)),
        Participant(DilocoMiner(L, world.model, world.shards), leaves_at=2),
        Participant(DilocoMiner(D, world.model, world.shards), delay_ms=CFG.round_ms + 1),
    ]
    return v, run_rounds(v, honest + bad, ROUNDS)


def test_loss_falls_over_rounds_on_every_domain(world: World, played: tuple) -> None:
    v, results = played
    assert [r.round for r in results] == [1, 2, 3]
    for r in results:
        assert r.val_loss_after < r.val_loss_before
    assert results[-1].val_loss_after < results[0].val_loss_before - 0.5
    for domain, windows in world.val_by_domain.items():  # the merged specialists help both domains
        before = eval_loss(world.model, world.params, windows)
        after = eval_loss(world.model, v.params, windows)
        assert after < before - 0.3, domain


def test_honest_accepted_every_round(played: tuple) -> None:
    _v, results = played
    for r in results:
        for m in HONEST:
            assert r.verdicts[m].accepted, (r.round, r.verdicts[m])


def test_each_bad_miner_rejected_with_its_reason(played: tuple) -> None:
    _v, results = played
    for r in results:
        for miner, reason in BAD.items():
            if miner == S and r.round == 1:
                assert S not in r.verdicts  # joins at the round 2 boundary
                continue
            assert r.verdicts[miner].reason == reason, (r.round, r.verdicts[miner])
    assert "cosine" in results[0].verdicts[X].detail and A in results[0].verdicts[X].detail


def test_bad_miners_rated_below_every_honest_one(played: tuple) -> None:
    v, _results = played
    board = dict(v.ratings.leaderboard("diloco"))
    worst_honest = min(board[m].ordinal for m in HONEST)
    for miner in BAD:
        assert board[miner].ordinal < worst_honest, miner


def test_leaver_does_not_stop_the_round(played: tuple) -> None:
    _v, results = played
    second, third = results[1], results[2]
    assert second.verdicts[L].reason == "left"
    assert second.model_sha256 != results[0].model_sha256  # the round merged without it
    assert L not in third.verdicts


def test_merge_uses_exactly_the_accepted_contributions(world: World) -> None:
    """The new global model is the outer step over the accepted deltas only (noise left out), and
    score weighting changes the merge."""
    from trainer.diloco.codec import Expected, decode_contribution
    from validator.diloco.merge import OuterNesterov, average

    cfg = RoundConfig(inner=InnerConfig(inner_steps=4, batch_size=4), score_weighted=True)
    v = DilocoValidator(world.model, dict(world.params), world.shards, world.val, cfg, b"s")
    miners = [DilocoMiner(A, world.model, world.shards), DilocoMiner(B, world.model, world.shards),
              NoiseMiner(N, world.model, world.shards)]  # fmt: skip
    for m in miners:
        v.join(m.address)
    spec = v.open_round(0)
    blobs = {m.address: m.contribute(spec, world.params) for m in miners}
    for i, (miner, data) in enumerate(blobs.items()):
        v.submit(miner, data, received_ms=i)
    result = v.close_round()
    assert {m for m, x in result.verdicts.items() if x.accepted} == {A, B}
    shapes = {n: tuple(t.shape) for n, t in world.params.items()}
    exp = Expected(1, spec.base_model_sha256, "int8", shapes, 1 << 26)
    deltas = [decode_contribution(blobs[m], exp)[1] for m in (A, B)]
    scores = [result.verdicts[m].gains.score for m in (A, B)]  # type: ignore[union-attr]
    want = OuterNesterov(cfg.outer_lr, cfg.outer_momentum).step(world.params, average(deltas, scores))
    uniform = OuterNesterov(cfg.outer_lr, cfg.outer_momentum).step(world.params, average(deltas))
    for n in want:
        assert torch.allclose(v.params[n], want[n], atol=1e-6)
    assert any(not torch.allclose(v.params[n], uniform[n], atol=1e-7) for n in want)


def test_adam_state_carries_over_rounds_only_when_asked(world: World) -> None:
    from trainer.diloco.inner import inner_train

    cfg = InnerConfig(inner_steps=2, batch_size=2, keep_adam_state=True)
    state: dict = {}
    first = inner_train(world.model, world.params, world.shards.shards[0], cfg, seed=1, adam_state=state)
    shuffled = dict(reversed(list(first.items())))  # a decoded model may list tensors in any order
    inner_train(world.model, shuffled, world.shards.shards[0], cfg, seed=2, adam_state=state)
    steps = {float(s["step"]) for s in state["opt"]["state"].values()}
    assert steps == {4.0}  # two rounds of two steps on one optimizer state
    fresh = inner_train(world.model, world.params, world.shards.shards[0], cfg, seed=1)
    assert all(torch.equal(fresh[n], first[n]) for n in fresh)  # same seed, fresh state: same result


def test_state_survives_a_restart_between_rounds(world: World, played: tuple, tmp_path: Path) -> None:
    from trainer.diloco.params import params_hash
    from validator.diloco.rounds import KIND

    v, _ = played
    v.save_state(tmp_path / "state")
    fresh = DilocoValidator(world.model, dict(world.params), world.shards, world.val, CFG, b"secret")
    assert not fresh.load_state(tmp_path / "empty")
    assert fresh.load_state(tmp_path / "state")
    assert (fresh.round, fresh.miners) == (v.round, v.miners)
    assert params_hash(fresh.params) == params_hash(v.params) != params_hash(world.params)
    assert set(fresh.outer.buf) == set(v.outer.buf) and v.outer.buf
    assert all(torch.equal(fresh.outer.buf[n], v.outer.buf[n]) for n in v.outer.buf)
    assert fresh.ratings.leaderboard(KIND) == v.ratings.leaderboard(KIND)
    assert fresh.open_round(0).round == v.round + 1  # the next round, from the merged model
    (tmp_path / "state" / "state.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a magnet-diloco-validator/1 file"):
        fresh.load_state(tmp_path / "state")
