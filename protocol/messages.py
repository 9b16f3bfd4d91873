"""The wire messages of MAGNET, version 1 (docs/PROTOCOL.md documents each field).

Fixed-point scales (EIP-712 has no floats):
  * ``*_e9``: value x 10^9 (losses, scores, reward weight), e.g. a loss of 2.5 is 2_500_000_000;
  * ``*_bps``: basis points, 10_000 = 100 %;
  * ``amount``: token base units (wei-like, 18 decimals), uint256.
Times are unix milliseconds (uint64); sizes are bytes; hashes are sha256 unless named keccak.

Rules for changing this file: a registered (TYPE, VERSION) is released forever. To change a type, add a
new class with the same TYPE, VERSION + 1 and a different field list, keep the old class registered
(rename it ``<Name>V1`` and move it to ``protocol/retired.py``), and add a vector file for the new one.
Retired versions: ReceiptProof v1 (``protocol.retired.ReceiptProofV1``), DilocoRound v1
(``protocol.retired.DilocoRoundV1``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from protocol.base import Message, register, rule
from protocol.schema import check_address, wire
from protocol.strict_json import MAX_DEPTH, nesting_within

PROTOCOL_VERSION = 1

# Identity.roles bitmask
ROLE_MINER = 1
ROLE_VALIDATOR = 2
ROLE_RELAY = 4  # serves public blobs and relays gossip without mining or validating
ALL_ROLES = ROLE_MINER | ROLE_VALIDATOR | ROLE_RELAY

BPS = 10_000
E9 = 1_000_000_000
ZERO32 = b"\x00" * 32

HEARTBEAT_STATUSES = ("idle", "training", "evaluating", "busy", "stopping")
TASK_STATUSES = ("open", "delayed", "evaluating", "finished", "failed", "cancelled")

KIND_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
PEER_ID_PATTERN = r"[1-9A-HJ-NP-Za-km-z]{16,128}"  # base58btc (the usual libp2p text form)

_ISSUED_AT = "Unix time in milliseconds at which the sender created this message."


def _issued_at() -> Any:
    return wire("uint64", _ISSUED_AT)


def _task_id() -> Any:
    return wire("bytes32", "Task id, chosen by the validator (random 32 bytes).")


# Hardware summary, shared by Identity and JoinRequest (flat fields: no nested structs).
def _cpu_cores() -> Any:
    return wire("uint16", "Logical CPU cores available to MAGNET.")


def _ram_mb() -> Any:
    return wire("uint32", "RAM available to MAGNET, MiB.")


def _gpu_name() -> Any:
    return wire("string", "GPU model name, empty when none.", max_len=128)


def _gpu_mb() -> Any:
    return wire("uint32", "GPU memory, MiB; 0 when no GPU.")


def _est_gflops() -> Any:
    return wire("uint32", "Measured training throughput estimate, GFLOP/s (sustained, best device).")


@register
@dataclass(frozen=True)
class Identity(Message):
    """Binds a libp2p peer id to an EVM address (the signer) and a payout address; gossiped on join."""

    TYPE = "Identity"
    VERSION = 1
    SIGNER_FIELD = "address"

    peer_id: str = wire(
        "string",
        "libp2p peer id (base58btc text form) this key speaks for.",
        max_len=128,
        pattern=PEER_ID_PATTERN,
    )
    address: str = wire("address", "EVM address of the signing (hot) key.")
    payout_address: str = wire("address", "Address that receives rewards (may equal address).")
    roles: int = wire("uint8", "Bitmask of roles: 1 miner, 2 validator, 4 relay.")
    addrs: tuple[str, ...] = wire(
        "string[]", "Multiaddrs the node can be dialled on (may be empty).", max_len=256, max_items=8
    )
    cpu_cores: int = _cpu_cores()
    ram_mb: int = _ram_mb()
    gpu_name: str = _gpu_name()
    gpu_mb: int = _gpu_mb()
    est_gflops: int = _est_gflops()
    software_version: str = wire("string", "Software name and version, e.g. 'magnet/0.1.0'.", max_len=64)
    protocol_version: int = wire("uint16", "Highest protocol version the node speaks.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.roles & ~ALL_ROLES == 0, lambda: f"Identity: unknown role bits in {self.roles:#x}")
        rule(self.protocol_version >= 1, "Identity: protocol_version must be at least 1")


@register
@dataclass(frozen=True)
class Heartbeat(Message):
    """A small liveness and load report, gossiped rarely."""

    TYPE = "Heartbeat"
    VERSION = 1
    SIGNER_FIELD = "address"

    address: str = wire("address", "EVM address of the sender (bound to its peer id by Identity).")
    seq: int = wire("uint64", "Sequence number, increasing per sender across restarts (or time-based).")
    status: str = wire("string", "What the node is doing.", choices=HEARTBEAT_STATUSES)
    load_bps: int = wire("uint16", "Current compute load, basis points of capacity (0..10000).")
    active_tasks: int = wire("uint16", "Tasks the node is working on now.")
    uptime_s: int = wire("uint64", "Seconds since the node started.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.load_bps <= BPS, lambda: f"Heartbeat: load_bps {self.load_bps} exceeds {BPS}")


@register
@dataclass(frozen=True)
class TaskAnnouncement(Message):
    """A validator offers a fine-tuning task; gossiped on the tasks topic."""

    TYPE = "TaskAnnouncement"
    VERSION = 1
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    validator: str = wire("address", "EVM address of the announcing validator.")
    kind: str = wire(
        "string",
        "Task kind: instruct, dpo, grpo, image, bitnet, diloco (more may come).",
        max_len=32,
        pattern=KIND_PATTERN,
    )
    model_ref: str = wire("string", "Human-readable base model reference (name or URI); informative only.")
    base_model_sha256: bytes = wire("bytes32", "sha256 of the base model blob (a bundle file).")
    base_model_size: int = wire("uint64", "Size of the base model blob, bytes.")
    train_data_sha256: bytes = wire("bytes32", "sha256 of the training data blob.")
    train_data_size: int = wire("uint64", "Size of the training data blob, bytes.")
    min_ram_mb: int = wire("uint32", "Minimum RAM a miner needs, MiB.")
    min_gpu_mb: int = wire("uint32", "Minimum GPU memory, MiB; 0 when a CPU can do it.")
    est_tokens: int = wire("uint64", "Estimated training tokens (or samples x steps for images).")
    est_gflop: int = wire("uint64", "Estimated total training compute, GFLOP.")
    join_by: int = wire("uint64", "Deadline for JoinRequests, unix ms.")
    commit_by: int = wire("uint64", "Deadline for Commitments, unix ms.")
    reveal_by: int = wire("uint64", "Deadline for Reveals (artifact pushed), unix ms.")
    eval_metrics: tuple[str, ...] = wire(
        "string[]", "Metric names used to score, e.g. ['loss'].", max_len=32, max_items=8
    )
    test_weight_bps: int = wire("uint16", "Weight of the test-split metric, basis points.")
    synthetic_weight_bps: int = wire(
        "uint16", "Weight of the synthetic-split metric; sums to 10000 with test."
    )
    max_artifact_bytes: int = wire("uint64", "Largest artifact bundle the validator accepts, bytes.")
    reward_weight_e9: int = wire("uint64", "Task reward weight (model size x hours), x 10^9.")
    test_split_hash: bytes = wire(
        "bytes32",
        "sha256 of the private test split, published after the task "
        "(synthetic tasks); zero for organic tasks.",
    )
    pool_size: int = wire("uint16", "Number of miners the validator will select.")
    params_json: str = wire(
        "string",
        "Kind-specific parameters as a JSON object text ('{}' when none); "
        "names only (e.g. reward functions), never code.",
        max_len=4096,
    )
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(
            self.join_by <= self.commit_by <= self.reveal_by,
            "TaskAnnouncement: deadlines must satisfy join_by <= commit_by <= reveal_by",
        )
        rule(
            self.test_weight_bps + self.synthetic_weight_bps == BPS,
            "TaskAnnouncement: test_weight_bps + synthetic_weight_bps must equal 10000",
        )
        rule(self.pool_size >= 1, "TaskAnnouncement: pool_size must be at least 1")
        rule(len(self.eval_metrics) >= 1, "TaskAnnouncement: eval_metrics must name at least one metric")
        rule(self.max_artifact_bytes > 0, "TaskAnnouncement: max_artifact_bytes must be positive")
        rule(_is_json_object(self.params_json), "TaskAnnouncement: params_json must be a JSON object")


@register
@dataclass(frozen=True)
class JoinRequest(Message):
    """A miner asks a validator to be selected for a task (direct stream)."""

    TYPE = "JoinRequest"
    VERSION = 1
    SIGNER_FIELD = "miner"

    task_id: bytes = _task_id()
    miner: str = wire("address", "EVM address of the miner (signer).")
    peer_id: str = wire("string", "libp2p peer id of the miner.", max_len=128, pattern=PEER_ID_PATTERN)
    cpu_cores: int = _cpu_cores()
    ram_mb: int = _ram_mb()
    gpu_name: str = _gpu_name()
    gpu_mb: int = _gpu_mb()
    est_gflops: int = _est_gflops()
    issued_at: int = _issued_at()


@register
@dataclass(frozen=True)
class Assignment(Message):
    """The validator's answer to a JoinRequest: selected or refused, with the deadlines echoed."""

    TYPE = "Assignment"
    VERSION = 1
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    validator: str = wire("address", "EVM address of the validator (signer).")
    miner: str = wire("address", "EVM address of the miner this answers.")
    accepted: bool = wire("bool", "True when the miner is in the pool.")
    reason: str = wire("string", "Why refused (or a note when accepted); shown to the user.", max_len=512)
    pool_size: int = wire("uint16", "Pool size the validator selected.")
    commit_by: int = wire("uint64", "Commitment deadline, unix ms (as announced or moved).")
    reveal_by: int = wire("uint64", "Reveal deadline, unix ms.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.commit_by <= self.reveal_by, "Assignment: commit_by must not be after reveal_by")
        rule(self.accepted or self.reason != "", "Assignment: a refusal must give a reason")


@register
@dataclass(frozen=True)
class Commitment(Message):
    """A miner commits to its artifact without revealing it: commitment = commitment_hash(...)."""

    TYPE = "Commitment"
    VERSION = 1
    SIGNER_FIELD = "miner"

    task_id: bytes = _task_id()
    miner: str = wire("address", "EVM address of the miner (signer).")
    commitment: bytes = wire("bytes32", "keccak256(abi.encode(task_id, miner, artifact_hash, salt)).")
    issued_at: int = _issued_at()


@register
@dataclass(frozen=True)
class Reveal(Message):
    """Sent with the pushed artifact after commit_by: opens the commitment."""

    TYPE = "Reveal"
    VERSION = 1
    SIGNER_FIELD = "miner"

    task_id: bytes = _task_id()
    miner: str = wire("address", "EVM address of the miner (signer).")
    artifact_hash: bytes = wire("bytes32", "sha256 of the whole artifact bundle file.")
    artifact_size: int = wire("uint64", "Size of the artifact bundle file, bytes.")
    salt: bytes = wire("bytes32", "The secret salt used in the commitment (random 32 bytes).")
    issued_at: int = _issued_at()

    def commitment(self) -> bytes:
        """The commitment this reveal opens."""
        return commitment_hash(self.task_id, self.miner, self.artifact_hash, self.salt)


@register
@dataclass(frozen=True)
class TaskStatus(Message):
    """The validator reports a task's state change."""

    TYPE = "TaskStatus"
    VERSION = 1
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    validator: str = wire("address", "EVM address of the validator (signer).")
    status: str = wire("string", "New state of the task.", choices=TASK_STATUSES)
    reason: str = wire("string", "Why (e.g. 'too few miners joined'); may be empty.", max_len=512)
    next_deadline: int = wire("uint64", "For 'delayed': the new join_by, unix ms; otherwise 0.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(
            self.status != "delayed" or self.next_deadline > 0,
            "TaskStatus: a 'delayed' status must give next_deadline",
        )


@register
@dataclass(frozen=True)
class Receipt(Message):
    """What a miner earned for one task; signed by the validator, a leaf of its epoch Merkle tree."""

    TYPE = "Receipt"
    VERSION = 1
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    miner: str = wire("address", "EVM address of the miner (signer of its Commitment).")
    payout: str = wire("address", "Address the amount is paid to (from the miner's Identity).")
    validator: str = wire("address", "EVM address of the validator (signer).")
    rank: int = wire("uint16", "1 = best; 0 = not ranked (disqualified or invalid).")
    pool_size: int = wire("uint16", "Number of miners ranked in the task.")
    test_loss_e9: int = wire("uint64", "Loss on the private test split, x 10^9.")
    synthetic_loss_e9: int = wire("uint64", "Loss on the synthetic split, x 10^9.")
    score_e9: int = wire("uint64", "Points earned for this task (rank score x task weight), x 10^9.")
    amount: int = wire("uint256", "Reward in token base units (18 decimals) claimable with the epoch proof.")
    epoch: int = wire("uint64", "Reward epoch whose Merkle root includes this receipt.")
    nonce: int = wire("uint64", "Validator-chosen number, unique per (validator, miner, epoch).")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(
            self.rank <= self.pool_size,
            lambda: f"Receipt: rank {self.rank} exceeds pool_size {self.pool_size}",
        )


@register
@dataclass(frozen=True)
class EpochRecord(Message):
    """A validator's epoch summary: the Merkle root it posts on chain and its epoch file's hash."""

    TYPE = "EpochRecord"
    VERSION = 1
    SIGNER_FIELD = "validator"

    epoch: int = wire("uint64", "Reward epoch number.")
    validator: str = wire("address", "EVM address of the validator (signer).")
    merkle_root: bytes = wire("bytes32", "Root of the Merkle tree over the epoch's receipt leaves.")
    epoch_file_sha256: bytes = wire("bytes32", "sha256 of the published epoch file (all receipts, amounts).")
    total_amount: int = wire("uint256", "Sum of the receipts' amounts, token base units.")
    receipt_count: int = wire("uint32", "Number of receipts in the epoch.")
    issued_at: int = _issued_at()


@register
@dataclass(frozen=True)
class ReceiptProof(Message):
    """Sent by the validator to a miner: proves a receipt's leaf (at its index) is under the epoch's root."""

    TYPE = "ReceiptProof"
    VERSION = 2
    SIGNER_FIELD = "validator"

    epoch: int = wire("uint64", "Reward epoch number.")
    validator: str = wire("address", "EVM address of the validator (signer) that posted the root.")
    index: int = wire(
        "uint64", "The leaf's index in the epoch (its receipt's position in the epoch file, from 0)."
    )
    receipt_hash: bytes = wire("bytes32", "receipt_hash(receipt): EIP-712 hashStruct of the Receipt.")
    payout: str = wire("address", "Payout address in the leaf.")
    amount: int = wire("uint256", "Amount in the leaf, token base units.")
    proof: tuple[bytes, ...] = wire(
        "bytes32[]", "Merkle proof, sibling hashes from leaf to root.", max_items=64
    )
    root: bytes = wire("bytes32", "The epoch's Merkle root (as posted on chain).")
    issued_at: int = _issued_at()


DILOCO_COMPRESSIONS = ("none", "topk", "int8", "int4", "int2")  # append only: released choices stay


@register
@dataclass(frozen=True)
class DilocoRound(Message):
    """A validator opens one round of a diloco task: the global model to start from and the rules."""

    TYPE = "DilocoRound"
    VERSION = 2
    SIGNER_FIELD = "validator"

    task_id: bytes = _task_id()
    validator: str = wire("address", "EVM address of the validator (signer).")
    round: int = wire("uint32", "Round number, 0 for the first; one DilocoRound per round.")
    model_sha256: bytes = wire("bytes32", "sha256 of the global model blob (public) miners start from.")
    model_size: int = wire("uint64", "Size of the global model blob, bytes.")
    prev_model_sha256: bytes = wire(
        "bytes32", "sha256 of the previous round's global model; zero in round 0."
    )
    shard_seed: bytes = wire(
        "bytes32",
        "Shard rule seed: shard = uint256(sha256(seed ++ uint32be(round) ++ address)) mod shard_count.",
    )
    shard_count: int = wire("uint32", "Number of data shards the training data is split into.")
    inner_steps: int = wire("uint32", "H: inner optimizer steps each miner runs this round.")
    compression: str = wire(
        "string", "How the pseudo-gradient is compressed (with error feedback).", choices=DILOCO_COMPRESSIONS
    )
    topk_bps: int = wire("uint16", "For 'topk': share of each tensor's entries sent, basis points; else 0.")
    deadline: int = wire("uint64", "Contributions pushed after this time are late and not merged, unix ms.")
    inner_lr_e9: int = wire("uint64", "Inner AdamW learning rate x 10^9 (before the run's warm-up / decay).")
    batch_size: int = wire("uint32", "Token windows per inner step.")
    block: int = wire(
        "uint32",
        "Entries per scale for 'int8' / 'int4' / 'int2' (even for int4, x4 for int2); at least 1 always.",
    )
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.shard_count >= 1, "DilocoRound: shard_count must be at least 1")
        rule(self.inner_steps >= 1, "DilocoRound: inner_steps must be at least 1")
        rule(self.inner_lr_e9 >= 1, "DilocoRound: inner_lr_e9 must be positive")
        rule(self.batch_size >= 1, "DilocoRound: batch_size must be at least 1")
        packed = {"int4": 2, "int2": 4}.get(self.compression, 1)
        rule(
            self.block >= 1 and self.block % packed == 0,
            "DilocoRound: block must be at least 1 (even for int4, a multiple of 4 for int2)",
        )
        rule(
            (self.round == 0) == (self.prev_model_sha256 == ZERO32),
            "DilocoRound: prev_model_sha256 must be zero exactly in round 0",
        )
        rule(
            self.compression == "topk" or self.topk_bps == 0,
            "DilocoRound: topk_bps must be 0 unless compression is 'topk'",
        )
        rule(
            self.compression != "topk" or 0 < self.topk_bps <= BPS,
            "DilocoRound: 'topk' needs 0 < topk_bps <= 10000",
        )


@register
@dataclass(frozen=True)
class DilocoContribution(Message):
    """A miner's notice for one round: the hash of the compressed pseudo-gradient blob it pushes."""

    TYPE = "DilocoContribution"
    VERSION = 1
    SIGNER_FIELD = "miner"

    task_id: bytes = _task_id()
    miner: str = wire("address", "EVM address of the miner (signer).")
    round: int = wire("uint32", "The round this contribution is for.")
    model_sha256: bytes = wire("bytes32", "sha256 of the global model it trained from (the round's model).")
    shard: int = wire("uint32", "The shard it trained on (must equal the round's rule for this miner).")
    delta_sha256: bytes = wire(
        "bytes32", "sha256 of the compressed pseudo-gradient (global minus local) blob."
    )
    delta_size: int = wire("uint64", "Size of the compressed pseudo-gradient blob, bytes.")
    tokens: int = wire("uint64", "Training tokens processed in the inner steps.")
    issued_at: int = _issued_at()

    def check(self) -> None:
        rule(self.delta_size > 0, "DilocoContribution: delta_size must be positive")


def commitment_hash(task_id: bytes, miner: str, artifact_hash: bytes, salt: bytes) -> bytes:
    """keccak256(abi.encode(bytes32 task_id, address miner, bytes32 artifact_hash, bytes32 salt)).

    ABI encoding (not packed) so a Solidity contract computes the same value with ``abi.encode``.
    """
    for name, value in (("task_id", task_id), ("artifact_hash", artifact_hash), ("salt", salt)):
        rule(isinstance(value, bytes) and len(value) == 32, f"commitment_hash: {name} must be 32 bytes")
    miner = check_address(miner, "miner")
    encoded = abi_encode(["bytes32", "address", "bytes32", "bytes32"], [task_id, miner, artifact_hash, salt])
    return bytes(keccak(encoded))


def receipt_hash(receipt: Receipt) -> bytes:
    """The EIP-712 ``hashStruct`` of a Receipt (domain-independent): the Merkle leaves commit to it."""
    return receipt.struct_hash()


def _is_json_object(text: str) -> bool:
    if not nesting_within(text, MAX_DEPTH):
        return False
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


# Released versions that newer ones replaced stay registered (decodable); imported last, for the registry.
from protocol import retired as _retired  # noqa: E402, F401
