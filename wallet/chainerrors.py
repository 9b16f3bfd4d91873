"""Chain errors a user can act on, and the decoding of contract reverts into them.

A revert's data is matched against the custom errors of our contracts' ABIs, so a user sees
``EpochNotOpen(epoch=3, currentEpoch=5): only the epoch that just ended can be posted`` instead of
``0x37f0d601...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
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
    "AlreadyClaimed": "the leaf at this index was already claimed (nothing more to claim for it)",
    "InvalidProof": (
        "the Merkle proof does not lead to the posted root (wrong proof, leaf index, amount or payout;"
        " a v1 proof has no index: ask the validator for a new proof)"
    ),
    "ExceedsTotal": "the validator's leaves sum to more than the total it posted",
    "ZeroPayout": "the payout address is zero",
    "EmptyBatch": "a batch claim needs at least one leaf",
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


# How nodes report a revert when the data is not where web3 looks (error code 3, ``data`` a hex string):
# code -32015 (Nethermind, OpenEthereum), or these words in the message or textual data.
_REVERT_WORDS = ("revert", "vm exception")
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})+")
_CUSTOM_ERROR = re.compile(r"custom error\s*:?\s*(0x[0-9a-fA-F]{8})", re.IGNORECASE)
_REASON = re.compile(r"execution reverted:\s*(.+)", re.IGNORECASE | re.DOTALL)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The revert data carried by an exception from web3 (or eth-tester), or None if it is no revert.

    Nodes and test chains report a revert differently, so every place is looked at:
    * web3's ``ContractCustomError`` / ``ContractPanicError`` / ``ContractLogicError`` (a JSON-RPC
      error of code 3 as geth, anvil and the embedded chain send it): ``data``, a hex string, or a
      dict holding one (``{"data": "0x..."}``, as Hardhat nests it);
    * a plain ``Web3RPCError`` (code -32000 or -32015 "execution reverted" from other nodes): the
      error's ``data`` as a hex string, a nested dict, or text with the hex in it ("Reverted 0x...");
      failing that, the message: "custom error 0x<selector>" (anvil, the selector only) or
      "execution reverted: <reason>" (an ``Error(string)``);
    * eth-tester's ``TransactionFailed`` (used without the embedded chain's JSON-RPC front).
    A revert whose data cannot be found is ``b""`` (reported as a revert without a reason).
    """
    from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError, Web3RPCError

    if isinstance(exc, ContractCustomError | ContractPanicError | ContractLogicError):
        found = _hex_in(exc.data)
        if found is not None:
            return found
        return _from_message(str(exc.message or exc))
    if type(exc).__name__ == "TransactionFailed" and type(exc).__module__.startswith("eth_tester"):
        from wallet.devchain import revert_data  # eth-tester is only imported where it is in use

        return revert_data(exc)
    if isinstance(exc, Web3RPCError):
        error = (exc.rpc_response or {}).get("error") if isinstance(exc.rpc_response, dict) else None
        if not isinstance(error, dict):
            return None
        message = str(error.get("message", ""))
        code = error.get("code")
        data = error.get("data")
        text = f"{message} {data if isinstance(data, str) else ''}".lower()
        if code not in (3, -32015) and not any(word in text for word in _REVERT_WORDS):
            return None  # a node error, not a revert
        found = _hex_in(data)
        return found if found is not None else _from_message(message)
    return None


def _hex_in(value: Any, depth: int = 0) -> bytes | None:
    """Revert bytes inside a JSON-RPC error's ``data``: "0x..", {"data": ..}, or "Reverted 0x.."."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("0x", ""):
            return b"" if text == "0x" else None
        match = _HEX_DATA.fullmatch(text) or _HEX_DATA.search(text)
        return bytes.fromhex(match.group(0)[2:]) if match else None
    if isinstance(value, dict) and depth < 4:
        for key in ("data", "result", "originalError", "error"):
            if key in value:
                found = _hex_in(value[key], depth + 1)
                if found is not None:
                    return found
    return None


def _from_message(message: str) -> bytes:
    """What a revert's message alone tells: a custom error's selector or an ``Error(string)`` reason."""
    custom = _CUSTOM_ERROR.search(message)
    if custom:
        return bytes.fromhex(custom.group(1)[2:])
    reason = _REASON.search(message)
    if reason:
        text = reason.group(1).strip()
        if text and not text.startswith("0x"):
            return _ERROR_STRING + abi_encode(["string"], [text])
        found = _hex_in(text)
        if found is not None:
            return found
    return b""
