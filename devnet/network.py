"""A devnet's parts wired into node cores: the embedded chain, a validator and N miners on 127.0.0.1.

Every participant is a real ``NodeCore`` with its own data directory, throwaway wallet, libp2p host
(TCP + Noise on 127.0.0.1) and store; they share one process and the chain's JSON-RPC endpoint, which
other processes can use too (``--keep-running``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.config import Config
from node.core import NodeCore
from node.profile import NetworkProfile
from wallet.devnet import DevnetChain, start_embedded_chain
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

log = logging.getLogger("magnet.devnet")
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@dataclass
class DevnetSettings:
    """What one devnet run looks like; `magnet devnet` options map onto these."""

    miners: int = 3
    kind: str = "instruct"
    tasks: int = 1
    train_s: float = 90.0  # the training window (join_by .. commit_by) of a task
    rows: int = 240  # rows of the bundled data set per task (train + test + synthetic)
    epoch_length: int = 3600  # chain seconds per reward epoch (the devnet advances time itself)
    speed_gflops: float = -1.0  # miner.speed_gflops: negative = no speed check (a devnet's windows are tiny)
    threads_per_miner: int = 1
    eval_max_examples: int = 16
    autoresearch: bool = True
    rpc_port: int = 0
    extra_miners: int = 0  # miners from other processes to wait for before the first task (--keep-running)


@dataclass
class Devnet:
    """The running parts."""

    root: Path
    settings: DevnetSettings
    chain: DevnetChain
    profile: NetworkProfile
    profile_file: Path
    validator: NodeCore
    miners: list[NodeCore] = field(default_factory=list)
    funded: set[str] = field(default_factory=set)

    @property
    def validator_service(self) -> Any:
        return self.validator.service("validator")

    def miner_service(self, index: int) -> Any:
        return self.miners[index].service("miner")

    def add_miner(self) -> NodeCore:
        core = start_miner(self.root / f"miner-{len(self.miners) + 1}", self.profile_file, self.settings)
        self.chain.fund(core.address)
        self.funded.add(core.address)
        self.miners.append(core)
        return core

    def fund_newcomers(self) -> list[str]:
        """Give gas to miners from other processes the validator has met (so they can claim)."""
        new = []
        for record in self.validator_service.p2p.peerbook.records():
            if record.roles & 1 and record.address not in self.funded:
                self.chain.fund(record.address)
                self.funded.add(record.address)
                new.append(record.address)
        return new

    def stop(self) -> None:
        for core in [*self.miners, self.validator]:
            try:
                core.stop()
            except Exception as exc:  # keep stopping the others
                log.warning("stopping %s: %s", core.data_dir.root, exc)
        self.chain.close()


def base_config(data_dir: Path, network: Path | None) -> Config:
    config = Config()
    config.node.data_dir = str(data_dir)
    config.node.network = str(network) if network else ""
    config.node.stop_timeout = 10.0
    config.node.start_timeout = 60.0
    config.p2p.listen_addrs = [LOOPBACK]
    config.p2p.request_timeout = 20.0
    config.p2p.reconnect_interval = 1.0
    config.p2p.bootstrap_backoff_max = 2.0
    return config


def validator_config(root: Path, profile_file: Path, settings: DevnetSettings) -> Config:
    config = base_config(root, profile_file)
    v = config.validator
    v.time_scale = settings.train_s / 7200.0  # the smallest bin is 2 nominal hours of training
    v.pool_size = max(v.pool_size, settings.miners + 4)
    v.ideal_min_pool = max(1, settings.miners)  # the defaults want 8 joiners: a devnet has fewer
    v.min_pool_to_start = 1
    v.join_retries = 2
    v.fresh_explorations_per_day = max(v.fresh_explorations_per_day, settings.miners + 4)
    v.eval_max_examples = settings.eval_max_examples
    v.eval_workers = 2
    # Every ranked miner earns on a devnet (the default pays only the winner of a small pool).
    v.place_scores = [3.0, 2.0, 1.5]
    v.middle_score = 1.0
    v.api_enabled = False
    v.synthetic_interval_s = 0.0
    v.join_answer_wait_s = 8.0
    # The bundled tiny model never solves a GSM8K problem (exact_answer stays 0 before and after a
    # minute of GRPO, and every artifact would look untouched): a devnet grpo task rewards shaping
    # that a tiny model can learn in seconds. Real tasks name their rewards (magnet task create --rewards).
    v.grpo_rewards = "numeric_answer:1.0,format:0.2"
    # ... judged at 24 tokens, where the base model states a number in ~half its samples (at the
    # default 128 it does in ~97 %, so a trained artifact's shortfall often equals the base's); the
    # task's length is announced and its miners train at it.
    v.grpo_max_new_tokens = 24
    return config


def miner_config(root: Path, profile_file: Path, settings: DevnetSettings) -> Config:
    config = base_config(root, profile_file)
    m = config.miner
    m.enabled_kinds = [settings.kind]
    m.pause_on_battery = False
    m.speed_gflops = settings.speed_gflops
    m.max_threads = settings.threads_per_miner
    m.nice = 0
    m.autoresearch = settings.autoresearch
    # Several miners share two cores here: keep slack for contention and a short search.
    m.budget_fraction = 0.6
    m.pinned_hparams = {"max_length": 256.0, "micro_batch_size": 4.0}  # ~4x cheaper steps than the defaults
    if settings.kind == "grpo":  # the task fixes the completion length
        # 8 samples a step (2 prompts x 4) instead of 32: ~20 steps in 15 s instead of 1, which moved
        # the bundled model's mean reward at 24 tokens 0.61 -> 0.83 (one step: 0.61 -> 0.61, and an
        # artifact whose shortfall equals the base's is "not fine-tuned"); lr 3e-3 for a tiny model.
        m.pinned_hparams = {"lr": 3e-3, "group_size": 4.0, "prompts_per_step": 2.0}
    if settings.kind == "image":
        # A LoRA on the random tiny UNet gets ~10 steps here: at lr 5e-3, 10 steps cut the test loss
        # 1.138 -> 1.041 (lr 2e-3: 1.108, inside the "not fine-tuned" tolerance; the default 1e-4 is
        # for real models). The warm-up is the default again: the loop fits the schedule to the
        # budget after 2 steps, so it ramps over 1 step, not 5 % of max_steps = 25.
        m.pinned_hparams = {"lr": 5e-3, "batch_size": 8.0}
        # No search: starting an image job (torch, diffusers, the pipeline) takes 10-30 s on two
        # loaded cores, and with a search no run finished inside a 45 s task.
        m.autoresearch = False
    if settings.kind == "bitnet":
        # Under load the final run may get 2-3 steps (load ~9: 2.5 s a step). Its plan is 10**6 steps
        # until the loop fits it to the budget after 2 steps, so the default 5 % warm-up ran those two
        # at ~lr/25000: one step left the test loss at the base model's (7.5499, inside the 1e-4
        # "not fine-tuned" tolerance). No warm-up at lr 3e-3: one step 7.168, a 17 s budget 5.06
        # (defaults: 5.72).
        m.pinned_hparams = {"lr": 3e-3, "warmup_ratio": 0.0}
    m.search_max_trials = 4
    m.search_final_fraction = 0.6
    m.commit_margin_s = 3.0
    m.checkpoint_interval_s = 5.0
    m.stall_timeout_s = 60.0
    m.join_retry_s = 1.0
    m.network_timeout_s = 15.0
    return config


def start_miner(root: Path, profile_file: Path, settings: DevnetSettings) -> NodeCore:
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    core = NodeCore(miner_config(root, profile_file, settings), LocalSigner.create(), log_to_file=False)
    core.plug_in("miner")
    core.start()
    return core


def start_devnet(root: Path, settings: DevnetSettings) -> Devnet:
    """Chain, contracts, a registered validator and ``settings.miners`` miners, all started."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    validator_signer = LocalSigner.create()
    params = RegistryParams(epoch_length=settings.epoch_length)
    chain = start_embedded_chain([validator_signer], params=params, port=settings.rpc_port)
    try:
        profile = NetworkProfile.new_devnet(
            chain.chain_id,
            chain.rpc_url,
            chain.deployment.registry,
            chain.deployment.token,
            validators=[validator_signer.address],
        )
        own_file = root / "validator-network.json"
        own_file.write_text(_profile_json(profile), encoding="utf-8")
        (root / "validator").mkdir(mode=0o700, exist_ok=True)
        validator = NodeCore(
            validator_config(root / "validator", own_file, settings), validator_signer, log_to_file=False
        )
        validator.plug_in("validator")
        validator.start()
    except BaseException:
        chain.close()
        raise
    addrs = validator.service("validator").p2p.addrs()  # type: ignore[union-attr]
    profile = profile.with_peers([a for a in addrs if "/127.0.0.1/" in a][:1] or addrs[:1])
    profile_file = root / "network.json"
    profile_file.write_text(_profile_json(profile), encoding="utf-8")
    net = Devnet(root, settings, chain, profile, profile_file, validator)
    try:
        for _ in range(settings.miners):
            net.add_miner()
    except BaseException:
        net.stop()
        raise
    return net


def wait_connected(net: Devnet, timeout: float = 30.0) -> None:
    """Until every miner has a connection to the validator and gossip had a moment to mesh."""
    deadline = time.monotonic() + timeout
    validator_peer = net.validator_service.p2p.peer_id
    for i in range(len(net.miners)):
        host = net.miner_service(i).p2p.host
        while not host.get_network().get_connections(validator_peer):
            if time.monotonic() > deadline:
                raise TimeoutError(f"miner {i + 1} did not connect to the validator within {timeout:.0f} s")
            time.sleep(0.2)
    time.sleep(2.5)  # GossipSub heartbeats (1 s) graft the mesh


def _profile_json(profile: NetworkProfile) -> str:
    import json

    return json.dumps(profile.to_json(), indent=2) + "\n"


def wait_extra_miners(net: Devnet, count: int, timeout: float) -> None:
    """Until ``count`` peers besides our own miners are connected to the validator."""
    host = net.validator_service.p2p.host
    deadline = time.monotonic() + timeout
    while len(host.get_network().get_connections()) < len(net.miners) + count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} extra miner(s) did not connect within {timeout:.0f} s")
        time.sleep(0.5)
    time.sleep(2.5)  # let gossip graft them into the mesh (and their Identity reach the validator)
    net.fund_newcomers()
