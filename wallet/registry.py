"""Typed access to the deployed ``MagnetRegistry``, which is also the ERC-20 ``MagnetToken``.

Deployment parameters, one wrapper per contract call, and the event lists a UI shows. Every
transaction goes through ``ChainClient`` (revert reasons decoded, receipts awaited).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.logs import DISCARD

from wallet.chain import ChainClient, TxResult

WEI_PER_TOKEN = 10**18
# One leaf of a claimMany batch: index, receipt hash, payout, amount, proof.
ClaimLeaf = tuple[int, bytes, str, int, Sequence[bytes]]


@dataclass(frozen=True)
class RegistryParams:
    """Constructor parameters of the registry (seconds and base units)."""

    epoch_length: int = 60
    emission_per_epoch: int = 1000 * WEI_PER_TOKEN
    min_stake: int = 10**18
    unstake_delay: int = 3600

    def __post_init__(self) -> None:
        if self.epoch_length < 1:
            raise ValueError("epoch_length must be at least 1 second")
        if self.min_stake < 1:
            raise ValueError("min_stake must be positive")


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live: what a network profile records."""

    chain_id: int
    registry: str
    token: str
    block_number: int


@dataclass(frozen=True)
class ValidatorInfo:
    stake: int
    pending: int
    unlock_at: int
    registered: bool
    removed: bool


VALIDATOR_PAGE = 256  # addresses per validatorPage call: ~2.6k gas of reads each, far below call limits


@dataclass(frozen=True)
class EpochPost:
    root: bytes
    epoch_file_hash: bytes
    total: int
    claimed: int
    stake_gwei: int


def deploy(client: ChainClient, params: RegistryParams, governance: str | None = None) -> Deployment:
    """Deploy the registry (which is also the token); ``governance`` defaults to the sender."""
    owner = Web3.to_checksum_address(governance or client._require_signer().address)
    result = client.deploy(
        "MagnetRegistry",
        owner,
        params.epoch_length,
        params.emission_per_epoch,
        params.min_stake,
        params.unstake_delay,
    )
    address = result.contract_address
    if address is None:
        raise RuntimeError("deployment receipt has no contract address")
    token = client.call(client.contract("MagnetRegistry", address).functions.token())
    return Deployment(client.chain_id, address, str(token), result.block_number)


class Registry:
    """The registry at ``address`` as seen through ``client``."""

    def __init__(self, client: ChainClient, address: str) -> None:
        self.client = client
        self.address = Web3.to_checksum_address(address)
        self.contract = client.contract("MagnetRegistry", self.address)
        self._token: Any = None

    @property
    def token(self) -> Any:
        if self._token is None:
            self._token = self.client.contract(
                "MagnetToken", self.client.call(self.contract.functions.token())
            )
        return self._token

    # --- reads ---------------------------------------------------------------------------

    def current_epoch(self) -> int:
        return int(self.client.call(self.contract.functions.currentEpoch()))

    def epoch_length(self) -> int:
        return int(self.client.call(self.contract.functions.epochLength()))

    def epoch_start(self, epoch: int) -> int:
        return int(self.client.call(self.contract.functions.epochStart(epoch)))

    def validator(self, address: str) -> ValidatorInfo:
        raw = self.client.call(self.contract.functions.validators(Web3.to_checksum_address(address)))
        return ValidatorInfo(int(raw[0]), int(raw[1]), int(raw[2]), bool(raw[3]), bool(raw[4]))

    def min_stake(self) -> int:
        return int(self.client.call(self.contract.functions.minStake()))

    def active_validators(self, page: int = VALIDATOR_PAGE) -> dict[str, int]:
        """Every registered, not removed validator with its active stake (>= minStake or not): the
        registration list read ``page`` addresses a call (``validatorPage``), without a log scan."""
        count = int(self.client.call(self.contract.functions.validatorCount()))
        active: dict[str, int] = {}
        for start in range(0, count, page):
            accounts, stakes = self.client.call(self.contract.functions.validatorPage(start, page))
            active.update({str(a): int(s) for a, s in zip(accounts, stakes, strict=True) if int(s) > 0})
        return active

    def post(self, epoch: int, validator: str) -> EpochPost | None:
        raw = self.client.call(self.contract.functions.posts(epoch, Web3.to_checksum_address(validator)))
        post = EpochPost(bytes(raw[0]), bytes(raw[1]), int(raw[2]), int(raw[3]), int(raw[4]))
        return None if post.root == b"\x00" * 32 else post

    def posters(self, epoch: int, from_block: int = 0) -> list[str]:
        """The validators that posted for ``epoch``, in order (from the ``EpochPosted`` events)."""
        return [e["validator"] for e in self.epoch_posts(from_block) if e["epoch"] == epoch]

    def is_claimed(self, epoch: int, validator: str, index: int) -> bool:
        """Whether the leaf at ``index`` of ``validator``'s root for ``epoch`` was claimed."""
        fn = self.contract.functions.isClaimed(epoch, Web3.to_checksum_address(validator), index)
        return bool(self.client.call(fn))

    def validator_share(self, epoch: int, validator: str) -> int:
        return int(
            self.client.call(
                self.contract.functions.validatorShare(epoch, Web3.to_checksum_address(validator))
            )
        )

    def token_balance(self, address: str) -> int:
        return int(self.client.call(self.token.functions.balanceOf(Web3.to_checksum_address(address))))

    # --- validator transactions ----------------------------------------------------------

    def register(self, stake: int) -> TxResult:
        return self.client.transact(self.contract.functions.register(), value=stake)

    def add_stake(self, amount: int) -> TxResult:
        return self.client.transact(self.contract.functions.addStake(), value=amount)

    def request_unstake(self, amount: int) -> TxResult:
        return self.client.transact(self.contract.functions.requestUnstake(amount))

    def withdraw(self) -> TxResult:
        return self.client.transact(self.contract.functions.withdraw())

    def remove_validator(self, validator: str, reason: str) -> TxResult:
        fn = self.contract.functions.removeValidator(Web3.to_checksum_address(validator), reason)
        return self.client.transact(fn)

    def post_epoch(self, epoch: int, root: bytes, epoch_file_hash: bytes, total: int) -> TxResult:
        return self.client.transact(self.contract.functions.postEpoch(epoch, root, epoch_file_hash, total))

    # --- claims (anyone) -----------------------------------------------------------------

    def claim(
        self,
        epoch: int,
        validator: str,
        index: int,
        receipt_hash: bytes,
        payout: str,
        amount: int,
        proof: Sequence[bytes],
    ) -> TxResult:
        fn = self.contract.functions.claim(
            epoch,
            Web3.to_checksum_address(validator),
            index,
            receipt_hash,
            Web3.to_checksum_address(payout),
            amount,
            list(proof),
        )
        return self.client.transact(fn)

    def claim_many(self, epoch: int, validator: str, leaves: Sequence[ClaimLeaf]) -> TxResult:
        """Claim several leaves of one post in one transaction (``claimMany``): a leaf already
        claimed (before, or earlier in the batch) is skipped; any other fault reverts the batch."""
        fn = self.contract.functions.claimMany(
            epoch,
            Web3.to_checksum_address(validator),
            [
                (index, receipt_hash, Web3.to_checksum_address(payout), amount, list(proof))
                for index, receipt_hash, payout, amount, proof in leaves
            ],
        )
        return self.client.transact(fn)

    def claimed_in(self, result: TxResult) -> list[dict[str, Any]]:
        """The ``Claimed`` events of a mined transaction (what a ``claimMany`` paid, leaf by leaf)."""
        logs = self.contract.events.Claimed().process_receipt(result.receipt, errors=DISCARD)
        return [dict(log["args"]) for log in logs]

    # --- event lists for UIs -------------------------------------------------------------

    def epoch_posts(self, from_block: int = 0) -> list[dict[str, Any]]:
        """Every ``EpochPosted`` event: epoch, validator, root, epochFileHash, total, stake."""
        return self._events("EpochPosted", from_block)

    def claims(self, from_block: int = 0, payout: str | None = None) -> list[dict[str, Any]]:
        """``Claimed`` events (epoch, validator, payout, receiptHash, tokens), optionally for one payout."""
        events = self._events("Claimed", from_block)
        if payout is not None:
            wanted = Web3.to_checksum_address(payout)
            events = [e for e in events if e["payout"] == wanted]
        return events

    def _events(self, name: str, from_block: int) -> list[dict[str, Any]]:
        event = getattr(self.contract.events, name)
        logs = self.client._guard(f"{name} logs", lambda: event.get_logs(from_block=from_block))
        return [{**dict(log["args"]), "blockNumber": log["blockNumber"]} for log in logs]
