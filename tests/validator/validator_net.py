"""A validator and scripted miners on 127.0.0.1, with the embedded chain, inside one trio run.

The scripted miners are test code built from p2p + protocol + trainer directly (the real miner
package is written in parallel): they hear the announcement on gossip, join over the ``join``
route, fetch the public blobs, train a LoRA adapter with the trainer, commit on gossip, then push
their bundle and reveal. ``Behaviour`` makes one honest (with a training budget) or one attacker.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio
from libp2p.peer.peerinfo import PeerInfo

from node.store import Store
from p2p.config import P2PConfig
from p2p.reqresp import RequestFailed
from p2p.service import LocalPeer, P2PService
from p2p.validation import Accept, AllowListAuthorizer
from protocol.bundle import extract_bundle
from protocol.encoding import decode, encode
from protocol.messages import (
    ROLE_MINER,
    ROLE_VALIDATOR,
    Assignment,
    Commitment,
    JoinRequest,
    Reveal,
    TaskAnnouncement,
    commitment_hash,
)
from protocol.routes import JOIN, PROOF, RECEIPT, REVEAL
from protocol.signing import Domain, sign
from validator.config import ValidatorConfig
from validator.service import ValidatorService, registry_access
from wallet.devnet import DevnetChain, start_embedded_chain
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

SALT = bytes(range(32))


def p2p_config() -> P2PConfig:
    """Loopback settings; the mesh degree covers the whole star (every miner talks to the validator only)."""
    return P2PConfig(
        listen_addrs=["/ip4/127.0.0.1/tcp/0"],
        reconnect_interval=0.5,
        identity_fetch_timeout=2.0,
        publish_rate=50.0,
        publish_burst=50,
        request_timeout=20.0,
        request_rate=20.0,
        request_burst=40,
        gossip_degree=16,
        gossip_degree_low=4,
        gossip_degree_high=24,
    )


def validator_config(**changes: Any) -> ValidatorConfig:
    cfg = ValidatorConfig(
        time_scale=1.0,
        join_min_s=10.0,
        reveal_min_s=40.0,
        ideal_min_pool=2,
        min_pool_to_start=2,
        join_retries=1,
        eval_workers=2,
        eval_max_examples=12,
        tick_s=0.2,
        reannounce_s=2.0,
        epoch_poll_s=0.5,
        place_scores=[3.0, 1.5, 0.5],
        join_answer_wait_s=12.0,
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@dataclass
class Network:
    chain: DevnetChain
    domain: Domain
    validator_signer: LocalSigner


def start_network() -> Network:
    signer = LocalSigner.create()
    chain = start_embedded_chain([signer], params=RegistryParams(epoch_length=3600), serve=False)
    return Network(chain, Domain(chain.chain_id, chain.deployment.registry, SALT), signer)


def make_validator(root: Path, net: Network, cfg: ValidatorConfig) -> tuple[ValidatorService, Any]:
    p2p = P2PService(
        p2p_config(),
        root / "node",
        net.domain,
        LocalPeer(net.validator_signer, ROLE_VALIDATOR),
        authorizer=AllowListAuthorizer([net.validator_signer.address]),
    )
    chain = registry_access(net.chain.registry(net.validator_signer), net.validator_signer.address)
    service = ValidatorService(
        cfg, root / "validator", net.domain, net.validator_signer, p2p, chain, own_p2p=True
    )
    (root / "node").mkdir(parents=True, exist_ok=True)
    core = SimpleNamespace(store=Store(root / "store.sqlite"))
    return service, core


@dataclass
class Behaviour:
    """How a scripted miner acts. ``mode``: honest, untouched, noise, copy, late_commit, bad_salt,
    oversized, pickle, misshaped, never_reveal."""

    mode: str = "honest"
    steps: int = 10
    lr: float = 3e-3
    copy_from: ScriptedMiner | None = None


@dataclass
class ScriptedMiner:
    name: str
    root: Path
    net: Network
    behaviour: Behaviour
    signer: LocalSigner = field(default_factory=LocalSigner.create)
    p2p: P2PService | None = None
    announcements: list[TaskAnnouncement] = field(default_factory=list)
    assignment: Assignment | None = None
    bundle: Path | None = None
    salt: bytes = field(default_factory=lambda: os.urandom(32))
    receipts: list[Any] = field(default_factory=list)
    receipt_bytes: list[bytes] = field(default_factory=list)
    proofs: list[Any] = field(default_factory=list)
    reveal_answer: str = ""
    commit_value: bytes | None = None  # a copier publishes a commitment it saw instead of its own

    @property
    def address(self) -> str:
        return self.signer.address

    async def start(
        self,
        nursery: trio.Nursery,
        validator_p2p: P2PService | None = None,
        validator_at: tuple[Any, list[Any]] | None = None,
    ) -> None:
        """Start the host and connect to the validator (its service, or its (peer id, addrs))."""
        self.p2p = P2PService(
            p2p_config(),
            self.root / self.name,
            self.net.domain,
            LocalPeer(self.signer, ROLE_MINER),
            authorizer=AllowListAuthorizer([self.net.validator_signer.address]),
        )
        await nursery.start(self.p2p.run)
        self.p2p.gossip.on(TaskAnnouncement, self._on_announcement)
        self.p2p.requests.register(RECEIPT, self._on_receipt)
        self.p2p.requests.register(PROOF, self._on_proof)
        if validator_p2p is not None:
            validator_at = (validator_p2p.peer_id, validator_p2p.host.get_addrs())
        assert validator_at is not None
        self.validator_peer, self.validator_addrs = validator_at
        await self.reconnect()

    async def reconnect(self, fresh: bool = False) -> None:
        """Dial the validator (again: after it restarted, ``fresh`` drops the dead connection first)."""
        assert self.p2p is not None
        if fresh:
            network = self.p2p.host.get_network()
            unblock = getattr(network, "unblock_peer", None)
            if unblock is not None:  # libp2p's negative dial cache would refuse the restarted validator
                unblock(self.validator_peer)
            try:
                await self.p2p.host.disconnect(self.validator_peer)
            except Exception:
                pass
        try:
            await self.p2p.host.connect(PeerInfo(self.validator_peer, self.validator_addrs))
        except Exception:
            pass

    def _on_announcement(self, accepted: Accept, _origin: str) -> None:
        assert isinstance(accepted.signed.message, TaskAnnouncement)
        self.announcements.append(accepted.signed.message)

    async def _on_receipt(self, _peer: str, payload: bytes) -> bytes:
        self.receipts.append(decode(payload).message)
        self.receipt_bytes.append(bytes(payload))
        return b""

    async def _on_proof(self, _peer: str, payload: bytes) -> bytes:
        self.proofs.append(decode(payload).message)
        return b""

    # --- the task ---------------------------------------------------------------------------------
    async def join(self, task: TaskAnnouncement) -> Assignment:
        assert self.p2p is not None
        request = JoinRequest(
            task_id=task.task_id,
            miner=self.address,
            peer_id=self.p2p.peer_id.to_string(),
            cpu_cores=2,
            ram_mb=4096,
            gpu_name="",
            gpu_mb=0,
            est_gflops=1,
            issued_at=int(time.time() * 1000),
        )
        reply = await self.p2p.requests.request(
            self.validator_peer, JOIN, encode(sign(request, self.net.domain, self.signer))
        )
        message = decode(reply).message
        assert isinstance(message, Assignment)
        self.assignment = message
        return message

    async def fetch_task_files(self, task: TaskAnnouncement) -> tuple[Path, Path]:
        assert self.p2p is not None
        base = await self.p2p.blobs.fetch(
            task.base_model_sha256.hex(), task.base_model_size, [self.validator_peer]
        )
        data = await self.p2p.blobs.fetch(
            task.train_data_sha256.hex(), task.train_data_size, [self.validator_peer]
        )
        model_dir = self.root / self.name / "base-model"
        if not model_dir.exists():
            extract_bundle(self.p2p.store.path(base.blob_hash), model_dir)
        train_file = self.root / self.name / "train.jsonl"  # the trainer reads data by extension
        train_file.write_bytes(Path(self.p2p.store.path(data.blob_hash)).read_bytes())
        return model_dir, train_file

    async def commit(self, task: TaskAnnouncement) -> None:
        assert self.p2p is not None and self.bundle is not None
        digest = hashlib.sha256(self.bundle.read_bytes()).digest()
        value = self.commit_value or commitment_hash(task.task_id, self.address, digest, self.salt)
        message = Commitment(
            task_id=task.task_id, miner=self.address, commitment=value, issued_at=int(time.time() * 1000)
        )
        await self.p2p.gossip.publish(sign(message, self.net.domain, self.signer))

    async def reveal(self, task: TaskAnnouncement) -> str:
        assert self.p2p is not None and self.bundle is not None
        data = self.bundle.read_bytes()
        digest = hashlib.sha256(data).digest()
        salt = os.urandom(32) if self.behaviour.mode == "bad_salt" else self.salt
        if len(data) <= task.max_artifact_bytes:
            blob = self.p2p.store.put_file(self.bundle, public=False)
            try:
                await self.p2p.blobs.push(self.validator_peer, blob)
            except Exception as exc:  # blobs.push lets a failed stream open escape as libp2p's own error
                raise RequestFailed(f"artifact push failed: {exc!r}") from exc
        message = Reveal(
            task_id=task.task_id,
            miner=self.address,
            artifact_hash=digest,
            artifact_size=len(data),
            salt=salt,
            issued_at=int(time.time() * 1000),
        )
        reply = await self.p2p.requests.request(
            self.validator_peer, REVEAL, encode(sign(message, self.net.domain, self.signer))
        )
        self.reveal_answer = decode(reply).message.reason  # type: ignore[attr-defined]
        return self.reveal_answer


def train_bundle(base_dir: Path, train_file: Path, out: Path, steps: int, lr: float) -> Path:
    """Train a LoRA adapter with the trainer's instruct recipe and pack it as a bundle (blocking)."""
    from trainer.recipes.base import NullReporter, TrainJob, get_recipe

    recipe = get_recipe("instruct")
    job = TrainJob(
        kind="instruct",
        base_model_dir=str(base_dir),
        train_file=str(train_file),
        output_dir=str(out),
        hparams={"lr": lr, "max_length": 256, "lora_r": 8},
        max_steps=steps,
        device="cpu",
        threads=1,
        seed=steps,
    )
    result = recipe.train(job, NullReporter())
    return recipe.export(Path(result.artifact_dir), out.with_suffix(".bundle"))


def scaled_adapter(source_bundle: Path, out: Path, scale: float, noise: float, base_dir: Path) -> Path:
    """A copy of an adapter with its changes to the base multiplied by ``scale`` plus ``noise`` (0, 0:
    the untouched base): lora_B, and the trainable-token rows, which PEFT stores as the rows' new values
    (so they are scaled as their difference from the base embedding in ``base_dir``)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from protocol.bundle import write_bundle

    work = out.with_suffix(".dir")
    extract_bundle(source_bundle, work)
    weights = load_file(str(work / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(7)
    for name, tensor in weights.items():
        if ".lora_B." in name:
            weights[name] = tensor * scale + noise * torch.randn(tensor.shape, generator=generator)
        elif name.endswith(".trainable_tokens_delta"):
            ids = json.loads((work / "adapter_config.json").read_text())["trainable_token_indices"]
            with safe_open(str(base_dir / "model.safetensors"), "pt") as base:
                rows = base.get_tensor("model.embed_tokens.weight")[ids]
            noisy = noise * torch.randn(tensor.shape, generator=generator)
            weights[name] = rows + (tensor - rows) * scale + noisy
    save_file(weights, str(work / "adapter_model.safetensors"))
    write_bundle(work, out, kind="instruct")
    return out


def misshaped_adapter(source_bundle: Path, out: Path) -> Path:
    """An adapter whose lora_A tensors have a wrong input width (must be refused before loading)."""
    import torch
    from safetensors.torch import load_file, save_file

    from protocol.bundle import write_bundle

    work = out.with_suffix(".dir")
    extract_bundle(source_bundle, work)
    weights = load_file(str(work / "adapter_model.safetensors"))
    for name, tensor in list(weights.items()):
        if ".lora_A." in name:
            weights[name] = torch.zeros(tensor.shape[0], tensor.shape[1] + 3)
    save_file(weights, str(work / "adapter_model.safetensors"))
    write_bundle(work, out, kind="instruct")
    return out


def pickle_bundle(out: Path) -> Path:
    """A hand-made bundle holding a pickle file (write_bundle itself refuses to make one)."""
    from protocol.bundle_manifest import MAGIC, BundleFile, Manifest, manifest_bytes

    payload = b"\x80\x04\x95" + b"cos\nsystem\n" * 4  # pickle opcodes: never to be loaded
    manifest = Manifest(
        kind="instruct",
        meta={},
        files=(BundleFile("adapter_model.pkl", len(payload), hashlib.sha256(payload).digest()),),
    )
    header = manifest_bytes(manifest)
    out.write_bytes(MAGIC + len(header).to_bytes(4, "big") + header + payload)
    return out


def oversized_bundle(source_bundle: Path, out: Path, size: int) -> Path:
    out.write_bytes(source_bundle.read_bytes() + b"\x00" * max(0, size - source_bundle.stat().st_size))
    return out


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
