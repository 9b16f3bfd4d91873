"""The round manager: open a round, take contributions until the deadline, judge, merge, rate.

Order of judgement (first failing rule gives the reason; docs/DILOCO.md lists them):
  1. fast filter: ``left`` (announced leaving; not rated), ``missing``, ``late``, then decode checks
     (``oversize``, ``malformed``, ``wrong_shape``, ``non_finite``, ``stale``, ``wrong_round``);
  2. ``copy``: nearly parallel to an earlier-committed contribution (copies.find_copies);
  3. Gauntlet: ``no_improvement``, ``wrong_shard`` (gauntlet.verdict).
Accepted pseudo-gradients are averaged (score-weighted when configured) and applied with the outer
Nesterov step; OpenSkill ratings rank the accepted by score, every other rated miner tied last.
Miners join and leave between rounds only; a round closes at its deadline whoever is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from protocol import strict_json
from trainer.diloco.codec import ContributionRejected, Expected, decode_contribution
from trainer.diloco.config import CompressionConfig, InnerConfig
from trainer.diloco.data import ShardSet
from trainer.diloco.params import Params, eval_loss, params_bytes, params_from_bytes, params_hash
from trainer.diloco.shards import assign_shards
from trainer.diloco.spec import RoundSpec
from validator.diloco.copies import DEFAULT_THRESHOLD, find_copies
from validator.diloco.gauntlet import Gains, GauntletConfig, LossCache, measure, verdict
from validator.diloco.merge import OuterNesterov, average
from validator.ratings import RatingBook

if TYPE_CHECKING:
    import torch

KIND = "diloco"
STATE_FORMAT = "magnet-diloco-validator/1"


@dataclass(frozen=True)
class RoundConfig:
    round_ms: int = 60_000  # time from opening a round to its deadline
    shard_seed: int = 0
    inner: InnerConfig = field(default_factory=InnerConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    gauntlet: GauntletConfig = field(default_factory=GauntletConfig)
    copy_threshold: float = DEFAULT_THRESHOLD
    outer_lr: float = 0.7
    outer_momentum: float = 0.5  # 0.9 (the DiLoCo paper's) measured worse here: docs/DILOCO.md
    score_weighted: bool = False  # merge weights: scores (True) or uniform (False)
    max_contribution_bytes: int = 64 << 20


@dataclass(frozen=True)
class Verdict:
    miner: str
    reason: str  # "" when accepted
    detail: str = ""
    gains: Gains | None = None

    @property
    def accepted(self) -> bool:
        return self.reason == ""


@dataclass(frozen=True)
class RoundResult:
    round: int
    verdicts: dict[str, Verdict]
    model_sha256: str  # the global model after the merge (unchanged when nothing was accepted)
    val_loss_before: float
    val_loss_after: float


@dataclass
class _Submission:
    blob: bytes
    received_ms: int
    committed_ms: int


class DilocoValidator:
    """Holds the global model, the outer optimizer, the miner set and the ratings across rounds."""

    def __init__(
        self, model: torch.nn.Module, params: Params, shards: ShardSet, val_windows: torch.Tensor,
        cfg: RoundConfig, secret: bytes,
    ) -> None:  # fmt: skip
        self.model, self.params, self.shards, self.val = model, params, shards, val_windows
        self.cfg, self._secret = cfg, secret
        self.outer = OuterNesterov(cfg.outer_lr, cfg.outer_momentum)
        self.ratings = RatingBook()
        self.miners: list[str] = []
        self._joining: list[str] = []
        self._leaving: set[str] = set()
        self.round = 0
        self.spec: RoundSpec | None = None
        self._subs: dict[str, _Submission] = {}
        self._pre: dict[str, Verdict] = {}  # verdicts reached before close (network notices)

    def join(self, miner: str) -> None:
        """Takes effect when the next round opens."""
        if miner not in self.miners and miner not in self._joining:
            self._joining.append(miner)

    def leave(self, miner: str) -> None:
        """Takes effect at the next round boundary; an open round stops waiting for the miner."""
        self._leaving.add(miner)

    def model_bytes(self) -> bytes:
        """The current global model as safetensors (the public blob of the round)."""
        return params_bytes(self.params)

    def open_round(self, now_ms: int, shard_rule: Callable[[str], int] | None = None) -> RoundSpec:
        """Open the next round. ``shard_rule`` (miner -> shard) replaces the in-process
        ``assign_shards``; the network passes the per-address rule (``shards.shard_for``)."""
        if self.spec is not None:
            raise RuntimeError(f"round {self.round} is still open; close it first")
        self.miners = [m for m in self.miners + self._joining if m not in self._leaving]
        self._joining, self._leaving, self._subs, self._pre = [], set(), {}, {}
        self.round += 1
        if shard_rule is None:
            assignment = assign_shards(self.miners, self.round, self.cfg.shard_seed, len(self.shards))
        else:
            assignment = {m: shard_rule(m) for m in self.miners}
        self.spec = RoundSpec(
            round=self.round, base_model_sha256=params_hash(self.params),
            deadline_ms=now_ms + self.cfg.round_ms, shard_seed=self.cfg.shard_seed,
            n_shards=len(self.shards), assignment=assignment,
            inner=self.cfg.inner, compression=self.cfg.compression,
        )  # fmt: skip
        return self.spec

    def admit(self, miner: str, shard: int) -> None:
        """Add a miner to the open round (network rounds: anyone may contribute, its shard given by
        the per-address rule); it stays a member for the following rounds."""
        spec = self._require_spec()
        spec.assignment.setdefault(miner, shard)
        if miner not in self.miners:
            self.miners.append(miner)

    def reject(self, miner: str, reason: str, detail: str) -> None:
        """A verdict reached before close (a bad notice); the miner's blob, if any, is not judged."""
        self.admit(miner, self._require_spec().assignment.get(miner, 0))
        self._pre.setdefault(miner, Verdict(miner, reason, detail))

    def submit(self, miner: str, blob: bytes, received_ms: int, committed_ms: int | None = None) -> None:
        """Record a contribution (judged at close). The first one per miner counts."""
        if self.spec is None or miner not in self.spec.assignment:
            raise ValueError(f"{miner} is not in an open round; join first and wait for the next round")
        self._subs.setdefault(miner, _Submission(blob, received_ms, committed_ms or received_ms))

    def close_round(self) -> RoundResult:
        """Judge, merge and rate; call at the deadline (or once every miner has sent)."""
        spec = self._require_spec()
        cache = LossCache(self.model, self.params)
        verdicts, deltas = self._fast_filter(spec)
        self._flag_copies(verdicts, deltas)
        gains = {m: self._gains(cache, spec, m, deltas[m]) for m in deltas if m not in verdicts}
        median_own = statistics.median([g.own for g in gains.values()]) if gains else 0.0
        for miner, g in gains.items():
            verdicts[miner] = Verdict(miner, *verdict(g, self.cfg.gauntlet, median_own), gains=g)
        before = cache.before("val", self.val)
        self._merge([m for m, v in verdicts.items() if v.accepted], verdicts, deltas)
        self._rate(verdicts)
        self.spec = None
        after = eval_loss(self.model, self.params, self.val)
        return RoundResult(spec.round, verdicts, params_hash(self.params), before, after)

    # --- persistence (between rounds) ---------------------------------------------------------------
    def save_state(self, folder: Path) -> None:
        """Write what the next round needs: the global model, the outer momentum, the round number,
        the members and the ratings. Call between rounds (an open round's contributions are not kept:
        after a restart that round is opened again with the same number and model)."""
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "model.safetensors", self.model_bytes())
        tmp = folder / "outer.safetensors.tmp"
        self.outer.save(tmp)
        os.replace(tmp, folder / "outer.safetensors")
        state = {
            "format": STATE_FORMAT, "round": self.round, "miners": self.miners,
            "joining": self._joining, "leaving": sorted(self._leaving), "ratings": self.ratings.to_dict(),
        }  # fmt: skip
        _atomic_write(folder / "state.json", json.dumps(state, indent=1).encode())

    def load_state(self, folder: Path) -> bool:
        """Restore what ``save_state`` wrote; False when ``folder`` holds no state. The model must have
        this validator's tensor names, shapes and dtypes."""
        if not (folder / "state.json").exists():
            return False
        state = strict_json.loads((folder / "state.json").read_text(), "diloco validator state", floats=True)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            where = folder / "state.json"
            raise ValueError(f"{where}: not a {STATE_FORMAT} file; move the folder away to start over")
        self.params = params_from_bytes((folder / "model.safetensors").read_bytes(), self.params)
        self.outer.load(folder / "outer.safetensors")
        self.round = int(state["round"])
        self.miners = [str(m) for m in state["miners"]]
        self._joining = [str(m) for m in state["joining"]]
        self._leaving = {str(m) for m in state["leaving"]}
        self.ratings = RatingBook.from_dict(state["ratings"])
        self.spec = None
        return True

    def _require_spec(self) -> RoundSpec:
        if self.spec is None:
            raise RuntimeError("no round is open")
        return self.spec

    def _fast_filter(self, spec: RoundSpec) -> tuple[dict[str, Verdict], dict[str, Params]]:
        exp = Expected(
            spec.round, spec.base_model_sha256, spec.compression.scheme,
            {n: tuple(t.shape) for n, t in self.params.items()}, self.cfg.max_contribution_bytes,
        )  # fmt: skip
        verdicts: dict[str, Verdict] = {}
        deltas: dict[str, Params] = {}
        for miner in spec.assignment:
            sub = self._subs.get(miner)
            if miner in self._pre:
                verdicts[miner] = self._pre[miner]
            elif sub is None:
                why = "left" if miner in self._leaving else "missing"
                verdicts[miner] = Verdict(miner, why, "no contribution when the round closed")
            elif sub.received_ms > spec.deadline_ms:
                verdicts[miner] = Verdict(miner, "late", f"{sub.received_ms - spec.deadline_ms} ms late")
            else:
                try:
                    deltas[miner] = decode_contribution(sub.blob, exp)[1]
                except ContributionRejected as exc:
                    verdicts[miner] = Verdict(miner, exc.reason, str(exc))
        return verdicts, deltas

    def _flag_copies(self, verdicts: dict[str, Verdict], deltas: dict[str, Params]) -> None:
        order = sorted(deltas, key=lambda m: (self._subs[m].committed_ms, self._subs[m].received_ms, m))
        flags = find_copies([(m, deltas[m]) for m in order], self.cfg.copy_threshold)
        for miner, (original, cos) in flags.items():
            verdicts[miner] = Verdict(miner, "copy", f"cosine {cos:.4f} with {original}'s earlier one")

    def _gains(self, cache: LossCache, spec: RoundSpec, miner: str, delta: Params) -> Gains:
        own = spec.assignment[miner]
        other = self._random_shard(own, spec, miner)
        batches = {
            "val": ("val", self.val),
            "own": (f"shard{own}", self._sample(spec, own)),
            "random": (f"shard{other}", self._sample(spec, other)),
        }
        return measure(cache, delta, batches, self.cfg.gauntlet)

    def _sample(self, spec: RoundSpec, shard: int) -> torch.Tensor:
        """Up to ``eval_windows`` rows of a shard [n, seq_len], the same rows for every miner this
        round (so the before-loss is computed once), drawn from the validator's secret."""
        import torch

        windows = self.shards.shards[shard]
        n = self.cfg.gauntlet.eval_windows
        if windows.shape[0] <= n:
            return windows
        digest = hashlib.sha256(self._secret + f"sample:{spec.round}:{shard}".encode()).digest()
        gen = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        return windows[torch.randperm(windows.shape[0], generator=gen)[:n]]

    def _random_shard(self, own: int, spec: RoundSpec, miner: str) -> int:
        """A shard other than ``own``, from another domain when there is one; drawn from the
        validator's secret so a miner cannot know which shard it will be checked against."""
        domains = self.shards.domains
        pool = [i for i in range(len(domains)) if domains[i] != domains[own]]
        pool = pool or [i for i in range(len(domains)) if i != own]
        if not pool:
            raise ValueError("the own-vs-random check needs at least two shards")
        digest = hashlib.sha256(self._secret + f"{spec.round}:{miner.lower()}".encode()).digest()
        return pool[int.from_bytes(digest[:8], "big") % len(pool)]

    def _merge(self, accepted: list[str], verdicts: dict[str, Verdict], deltas: dict[str, Params]) -> None:
        if not accepted:
            return  # nothing worth merging: the global model stays as it is for the next round
        weights = None
        if self.cfg.score_weighted:
            weights = [_score(verdicts[m]) for m in accepted]
        self.params = self.outer.step(self.params, average([deltas[m] for m in accepted], weights))

    def _rate(self, verdicts: dict[str, Verdict]) -> None:
        accepted = [v for v in verdicts.values() if v.accepted]
        ranked = [v.miner for v in sorted(accepted, key=lambda v: -_score(v))]
        unranked = [m for m, v in verdicts.items() if not v.accepted and v.reason != "left"]
        self.ratings.update(KIND, ranked, unranked)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _score(v: Verdict) -> float:
    return v.gains.score if v.gains is not None else 0.0


class Contributor(Protocol):
    """A miner as `run_rounds` drives it (trainer.diloco.miner.DilocoMiner is the honest one)."""

    address: str

    def contribute(self, spec: RoundSpec, global_params: Params) -> bytes: ...


@dataclass(frozen=True)
class Participant:
    """A contributor and when it takes part: joins before round ``joins_at``, leaves during
    round ``leaves_at`` without sending, and answers ``delay_ms`` after the round opens."""

    miner: Contributor
    joins_at: int = 1
    leaves_at: int | None = None
    delay_ms: int = 0


def run_rounds(
    validator: DilocoValidator, participants: Sequence[Participant], rounds: int, start_ms: int = 0
) -> list[RoundResult]:
    """Run ``rounds`` whole rounds in this process on a simulated clock (tests, bench, devnet).

    Each participant gets the published global model as bytes (decoded as a miner would) and its
    contribution is received ``delay_ms`` after the round opens, committed in list order.
    """
    results = []
    now = start_ms
    for r in range(validator.round + 1, validator.round + rounds + 1):
        for p in participants:
            if p.joins_at == r:
                validator.join(p.miner.address)
        spec = validator.open_round(now)
        blob = validator.model_bytes()
        for order, p in enumerate(participants):
            if p.miner.address not in spec.assignment:
                continue
            if p.leaves_at == r:
                validator.leave(p.miner.address)
                continue
            got = params_from_bytes(blob, validator.params)
            sent = p.miner.contribute(spec, got)
            validator.submit(p.miner.address, sent, now + p.delay_ms + order, now + order)
        results.append(validator.close_round())
        now = spec.deadline_ms
    return results
