"""Typed events of the wallet (see node.events): transactions mined or refused.

``typed_fields`` is what mypy reads as ``@dataclass`` (``event`` makes the dataclass at runtime),
as in p2p/events.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from node.events import Event, event

T = TypeVar("T")

if TYPE_CHECKING:
    from dataclasses import dataclass as typed_fields
else:

    def typed_fields(**_options: Any) -> Callable[[T], T]:
        """What mypy sees as @dataclass; at runtime ``event`` makes the dataclass itself."""
        return lambda cls: cls


@event("wallet.transaction_mined")
@typed_fields(frozen=True, kw_only=True)
class TransactionMined(Event):
    """A transaction this node sent was mined and succeeded."""

    what: str  # the contract call ("postEpoch", "claim", "deploy MagnetRegistry"...)
    tx_hash: str
    sender: str
    gas_used: int
    block_number: int
    seconds: float  # from signing to receipt


@event("wallet.transaction_failed")
@typed_fields(frozen=True, kw_only=True)
class TransactionFailed(Event):
    """A transaction was refused (revert, funds, timeout); ``reason`` is the user-facing message."""

    what: str
    sender: str
    reason: str
