"""Chain errors a user can act on, and the decoding of contract reverts into them.

A revert's data is matched against the custom errors of our contracts' ABIs, so a user sees
``EpochNotOpen(epoch=3, currentEpoch=5): only the epoch that just ended can be posted`` instead of
``0x37f0d601...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.crypto import keccak

from wallet.contracts import CONTRACT_NAMES, load_artifact
from wallet.errors import WalletError

# What each revert means for the person who sent the transaction.
HINTS = {
    "NotValidator": "the account is not a registered validator: run `magnet validator register` first",
    "AlreadyRegistered": "this account is already a validator: use `magnet validator stake` to add stake",
    "ValidatorIsRemoved": "governance removed this validator; it cannot register again",
    "StakeTooLow": "the stake is below the registry's minimum: send more, or unstake everything",
    "ZeroAmount": "the amount must be positive",
    "UnstakeTooLarge": "you asked to unstake more than your active stake",
    "NothingToWithdraw": "nothing is pending withdrawal: request an unstake first",
    "StillLocked": "the unstaked amount is still locked: withdraw after the unlock time",
    "TransferFailed": "sending the stake back failed (the receiving account refused it)",
    "EpochNotOpen": "only the epoch that just ended (current - 1) can be posted",
    "AlreadyPosted": "this validator already posted a root for that epoch (a replay)",
    "EmptyPost": "a post needs a non-zero Merkle root and a positive total",
    "NoPost": "that validator posted no root for that epoch",
    "ClaimNotOpen": "claims open once the epoch's posting window has closed: try again later",
    "AlreadyClaimed": "this receipt was already claimed",
    "InvalidProof": "the Merkle proof does not lead to the posted root (wrong proof, amount or payout)",
    "ExceedsTotal": "the validator's leaves sum to more than the total it posted",
    "ZeroPayout": "the payout address is zero",
    "OnlyMinter": "only the registry can mint tokens",
    "OwnableUnauthorizedAccount": "only the registry owner (governance) may do this",
    "BadParameter": "a registry parameter is invalid",
}
_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


class ChainError(WalletError):
    """A chain operation failed; the message says why and what to do."""


class RevertError(ChainError):
    """A contract call or transaction reverted; ``name`` and ``args`` are the decoded error."""

    def __init__(self, message: str, name: str = "", args: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.error_args = args or {}


class InsufficientFunds(ChainError):
    """The sender cannot pay for gas and value."""


class WrongChain(ChainError):
    """The endpoint serves another chain than the network profile names."""


class TxTimeout(ChainError):
    """A transaction was not mined in time."""


class RpcUnavailable(ChainError):
    """The JSON-RPC endpoint cannot be reached (after retries)."""


@dataclass(frozen=True)
class _ErrorAbi:
    name: str
    types: tuple[str, ...]
    names: tuple[str, ...]


@cache
def _error_table() -> dict[bytes, _ErrorAbi]:
    table = {}
    for contract in CONTRACT_NAMES:
        for entry in load_artifact(contract)["abi"]:
            if entry.get("type") != "error":
                continue
            types = tuple(_canonical_type(i) for i in entry["inputs"])
            selector = keccak(text=f"{entry['name']}({','.join(types)})")[:4]
            table[selector] = _ErrorAbi(entry["name"], types, tuple(i["name"] for i in entry["inputs"]))
    return table


def _canonical_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def decode_revert(data: bytes) -> RevertError:
    """A ``RevertError`` naming the contract error behind revert ``data``."""
    selector, body = data[:4], data[4:]
    if not data:
        return RevertError("the transaction reverted without a reason", "")
    if selector == _ERROR_STRING:
        (reason,) = _safe_decode(("string",), body) or ("(undecodable reason)",)
        return RevertError(f"reverted: {reason}", "Error", {"reason": reason})
    if selector == _PANIC:
        (code,) = _safe_decode(("uint256",), body) or (-1,)
        return RevertError(
            f"reverted with panic code {code:#x} (an assertion or arithmetic failure)", "Panic"
        )
    abi = _error_table().get(selector)
    if abi is None:
        return RevertError(f"reverted with unknown error data 0x{data[:68].hex()}", "")
    values = _safe_decode(abi.types, body)
    args = dict(zip(abi.names, values or (), strict=False))
    shown = ", ".join(f"{k}={_show(v)}" for k, v in args.items())
    hint = HINTS.get(abi.name, "")
    return RevertError(f"{abi.name}({shown}): {hint}" if hint else f"{abi.name}({shown})", abi.name, args)


def _safe_decode(types: tuple[str, ...], body: bytes) -> tuple[Any, ...] | None:
    try:
        return tuple(abi_decode(list(types), body))
    except Exception:  # malformed revert data from an untrusted node: show it raw instead
        return None


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The revert data carried by a web3 exception, or None if it is not a revert."""
    from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError

    if isinstance(exc, ContractCustomError | ContractPanicError | ContractLogicError):
        data = exc.data
        if isinstance(data, str) and data.startswith("0x"):
            try:
                return bytes.fromhex(data[2:])
            except ValueError:
                return b""
        return b"" if data is None else None
    return None
