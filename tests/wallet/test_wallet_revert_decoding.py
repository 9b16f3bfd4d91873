"""Reverts become named errors however the node reports them (web3, anvil, other nodes, eth-tester)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from web3.exceptions import ContractCustomError, ContractLogicError, Web3RPCError

from wallet.chainerrors import decode_revert, revert_data_of
from wallet.contracts import load_artifact

VALIDATOR = "0x" + "ab" * 20
SELECTOR = keccak(text="AlreadyClaimed(uint256,address,uint256)")[:4]
DATA = SELECTOR + encode(["uint256", "address", "uint256"], [3, VALIDATOR, 300])
HEX = "0x" + DATA.hex()


def rpc_error(error: dict[str, Any]) -> Web3RPCError:
    return Web3RPCError(str(error.get("message")), rpc_response={"jsonrpc": "2.0", "id": 1, "error": error})  # type: ignore[typeddict-item]


REPORTS = {
    "web3 custom error (code 3: geth, anvil, embedded chain)": ContractCustomError(HEX, data=HEX),
    "web3 logic error, data nested (Hardhat)": ContractLogicError("execution reverted", data={"data": HEX}),
    "rpc code 3 with hex data": rpc_error({"code": 3, "message": "execution reverted", "data": HEX}),
    "rpc -32000, data nested twice": rpc_error(
        {"code": -32000, "message": "execution reverted", "data": {"message": "revert", "data": HEX}}
    ),
    "rpc -32015, data as text (Nethermind, Ganache)": rpc_error(
        {"code": -32015, "message": "VM execution error.", "data": f"Reverted {HEX}"}
    ),
    "eth-tester, bytes": TransactionFailed(DATA),
    "eth-tester, bytes literal in its message": TransactionFailed(f"execution reverted: {DATA!r}"),
}


@pytest.mark.parametrize("exc", REPORTS.values(), ids=list(REPORTS))
def test_a_custom_error_is_decoded_with_its_arguments_from_every_report(exc: BaseException) -> None:
    data = revert_data_of(exc)
    assert data == DATA
    err = decode_revert(data)
    assert err.name == "AlreadyClaimed"
    assert (err.error_args["epoch"], err.error_args["validator"].lower(), err.error_args["index"]) == (
        3,
        VALIDATOR,
        300,
    )
    assert "already claimed" in str(err)


def test_a_message_with_only_the_selector_still_names_the_error() -> None:
    exc = rpc_error({"code": -32000, "message": f"execution reverted: custom error {HEX[:10]}: (cut)"})
    err = decode_revert(revert_data_of(exc) or b"")
    assert err.name == "AlreadyClaimed" and err.error_args == {}


def test_a_reason_string_in_the_message_is_an_error_string() -> None:
    exc = rpc_error({"code": -32000, "message": "execution reverted: Ownable: caller is not the owner"})
    err = decode_revert(revert_data_of(exc) or b"")
    assert err.name == "Error" and err.error_args == {"reason": "Ownable: caller is not the owner"}


def test_a_bare_revert_and_node_errors() -> None:
    assert revert_data_of(rpc_error({"code": 3, "message": "execution reverted", "data": "0x"})) == b""
    assert revert_data_of(rpc_error({"code": -32000, "message": "execution reverted"})) == b""
    assert decode_revert(b"").name == ""
    for error in (
        {"code": -32000, "message": "insufficient funds for gas * price + value"},
        {"code": -32000, "message": "nonce too low", "data": "0x1234"},
        {"code": -32601, "message": "method not found"},
    ):
        assert revert_data_of(rpc_error(error)) is None  # a node error, not a revert
    assert revert_data_of(ValueError("boom")) is None
    assert revert_data_of(Web3RPCError("no response body")) is None


def test_garbage_data_from_an_untrusted_node_is_shown_not_raised() -> None:
    err = decode_revert(SELECTOR + b"\x01\x02")  # right selector, truncated arguments
    assert err.name == "AlreadyClaimed" and err.error_args == {}
    assert decode_revert(b"\xde\xad\xbe\xef" + bytes(32)).name == ""  # unknown selector: raw hex


@pytest.mark.parametrize("contract", ["MagnetRegistry", "MagnetToken"])
def test_every_custom_error_of_the_abi_round_trips(contract: str) -> None:
    for entry in load_artifact(contract)["abi"]:
        if entry["type"] != "error":
            continue
        types = [i["type"] for i in entry["inputs"]]
        values = [_sample(t) for t in types]
        data = keccak(text=f"{entry['name']}({','.join(types)})")[:4] + encode(types, values)
        for exc in (
            ContractCustomError("0x", data="0x" + data.hex()),
            rpc_error({"code": 3, "message": "execution reverted", "data": "0x" + data.hex()}),
        ):
            err = decode_revert(revert_data_of(exc) or b"")
            assert err.name == entry["name"]
            assert len(err.error_args) == len(types)


def _sample(abi_type: str) -> Any:
    return {"address": VALIDATOR, "string": "x", "bytes32": b"\x01" * 32}.get(abi_type, 7)
