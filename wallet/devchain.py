"""The embedded devnet chain: py-evm through eth-tester, spoken to only as JSON-RPC.

``EmbeddedChain.handle(request)`` answers a standard JSON-RPC 2.0 request (hex quantities,
camelCase fields, reverts as ``{"code": 3, "message": "execution reverted", "data": "0x..."}``
like geth and anvil). The in-process ``EmbeddedProvider`` and the HTTP server in
``wallet.rpcserver`` both go through it, so the node, a miner in another process and a real chain
take the same path through ``wallet.chain.ChainClient``.

Beyond the ``eth_*`` methods web3 needs, it answers anvil's ``evm_increaseTime`` and ``evm_mine``,
so a devnet or a test drives epochs the same way on both.
"""

from __future__ import annotations

import ast
import itertools
import threading
from collections.abc import Mapping
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed, ValidationError
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

# Methods served; anything else gets -32601. Signing methods are absent on purpose: keys stay
# with the client, which sends raw signed transactions, as on a real chain.
SERVED_METHODS = frozenset(
    {
        "web3_clientVersion",
        "net_version",
        "eth_chainId",
        "eth_blockNumber",
        "eth_syncing",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_call",
        "eth_estimateGas",
        "eth_sendRawTransaction",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_accounts",
    }
)
REVERT_PREFIX = "execution reverted"
_ERROR_STRING_SELECTOR = keccak(text="Error(string)")[:4]


class EmbeddedChain:
    """An in-memory EVM chain (eth-tester + py-evm) with funded faucet accounts. Thread-safe."""

    def __init__(self) -> None:
        self.tester = EthereumTester(PyEVMBackend())
        self._web3 = Web3(EthereumTesterProvider(self.tester))
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.faucet = self.tester.get_accounts()[0]
        self.chain_id: int = self._web3.eth.chain_id

    # --- JSON-RPC -----------------------------------------------------------------------

    def handle(self, request: Any) -> dict[str, Any]:
        """Answer one JSON-RPC 2.0 request object (never raises)."""
        if not isinstance(request, Mapping) or not isinstance(request.get("method"), str):
            return _error(None, -32600, "invalid request: expected an object with a string 'method'")
        req_id = request.get("id")
        method, params = request["method"], request.get("params", [])
        if not isinstance(params, list):
            return _error(req_id, -32602, "params must be an array")
        try:
            with self._lock:
                result = self._dispatch(method, params)
        except TransactionFailed as exc:
            if method == "eth_estimateGas":
                exc = self._call_failure(params) or exc
            return _revert(req_id, exc)
        except _MethodNotFound:
            return _error(req_id, -32601, f"method {method[:64]!r} is not served by the embedded chain")
        except Exception as exc:  # a bug in a backend must not kill the server thread
            if "cannot afford" in str(exc) or "insufficient funds" in str(exc):
                # py-evm says "cannot afford txn gas"; answer in geth's words, which clients recognise
                return _error(req_id, -32000, "insufficient funds for gas * price + value")
            if "Invalid transaction nonce" in str(exc):
                return _error(req_id, -32000, f"nonce too low: {exc}"[:300])
            if isinstance(exc, ValidationError | ValueError | TypeError | KeyError):
                return _error(req_id, -32602, f"invalid params for {method}: {exc}"[:500])
            return _error(req_id, -32603, f"{method} failed: {type(exc).__name__}: {exc}"[:500])
        return {"jsonrpc": "2.0", "id": req_id, "result": to_rpc(result)}

    def _dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "evm_increaseTime":
            return self.increase_time(int(_quantity(params[0])))
        if method == "evm_mine":
            self.tester.mine_blocks(1)
            return "0x0"
        if method == "eth_accounts":
            return []
        if method not in SERVED_METHODS:
            raise _MethodNotFound(method)
        if method == "eth_sendRawTransaction":
            return self._send_raw(params[0])
        return self._web3.manager.request_blocking(RPCEndpoint(method), params)

    def _call_failure(self, params: list[Any]) -> TransactionFailed | None:
        """Replay a failed gas estimate as ``eth_call``: eth-tester's estimate reports some custom
        errors as if they were ``Error(string)`` (selector lost); its call keeps the raw bytes."""
        try:
            with self._lock:
                self._web3.manager.request_blocking(RPCEndpoint("eth_call"), [params[0], "latest"])
        except TransactionFailed as exc:
            return exc
        except Exception:
            return None
        return None

    def _send_raw(self, raw: str) -> Any:
        return self.tester.send_raw_transaction(raw)

    # --- devnet controls (in process) ----------------------------------------------------

    def increase_time(self, seconds: int) -> int:
        """Mine a block ``seconds`` after the latest one; return the new timestamp."""
        with self._lock:
            latest = self.tester.get_block_by_number("latest")["timestamp"]
            target = int(latest) + max(int(seconds), 1)
            self.tester.time_travel(target)
            return target

    def fund(self, address: str, wei: int) -> str:
        """Send ``wei`` from the faucet to ``address``; return the transaction hash."""
        with self._lock:
            tx_hash: str = self.tester.send_transaction(
                {"from": self.faucet, "to": address, "value": wei, "gas": 21000}
            )
            return tx_hash

    def provider(self) -> EmbeddedProvider:
        return EmbeddedProvider(self)


class EmbeddedProvider(BaseProvider):
    """A web3 provider that hands requests to an ``EmbeddedChain`` in this process."""

    def __init__(self, chain: EmbeddedChain) -> None:
        super().__init__()
        self.chain = chain
        self._ids = itertools.count(1)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": to_rpc(params)}
        response: RPCResponse = self.chain.handle(request)  # type: ignore[assignment]
        return response

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True


class _MethodNotFound(Exception):
    pass


def _error(req_id: Any, code: int, message: str, data: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": req_id, "error": error}


def _revert(req_id: Any, exc: TransactionFailed) -> dict[str, Any]:
    """eth-tester's revert as geth reports it: code 3 with the ABI-encoded revert data."""
    data = revert_data(exc)
    return _error(req_id, 3, REVERT_PREFIX, "0x" + data.hex())


def revert_data(exc: TransactionFailed) -> bytes:
    """The raw revert bytes behind an eth-tester ``TransactionFailed``.

    eth-tester flattens them into its message: ``execution reverted: b'...'`` for custom errors
    (a Python bytes literal, parsed with ``ast.literal_eval``, which evaluates literals only) or
    the decoded reason for ``Error(string)``.
    """
    text = str(exc.args[0]) if exc.args else ""
    if isinstance(exc.args[0] if exc.args else None, bytes):
        return bytes(exc.args[0])
    reason = text.removeprefix(REVERT_PREFIX).removeprefix(": ")
    if reason[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(reason)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, bytes):
            return value
    if not reason or reason == REVERT_PREFIX:
        return b""
    return _ERROR_STRING_SELECTOR + abi_encode(["string"], [reason])


def _quantity(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def to_rpc(value: Any, key: str = "") -> Any:
    """Convert a web3/eth-tester value to standard JSON-RPC form (hex quantities and data)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        if key == "logsBloom":
            return "0x" + value.to_bytes(256, "big").hex()
        return hex(value)
    if isinstance(value, HexBytes | bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return None if (value == "" and key == "to") else value
    if isinstance(value, Mapping):
        return {k: to_rpc(v, k) for k, v in value.items() if k != "state_root"}
    if isinstance(value, list | tuple):
        return [to_rpc(v, key) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} as JSON-RPC")
