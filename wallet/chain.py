"""The chain client: web3.py against any EVM JSON-RPC endpoint (or the embedded devnet chain).

``ChainClient`` signs locally and sends raw transactions, so the node never needs an unlocked
account. It tracks nonces, estimates gas (with a margin), checks the balance before sending, waits
for receipts with a timeout, retries transient transport errors, and turns node errors into
``ChainError`` subclasses whose message says what to do (decoded revert, insufficient funds, wrong
chain id, timeout).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_utils.crypto import keccak
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import RPCEndpoint, TxParams, TxReceipt

from node.events import EventBus
from node.logs import component_logger
from wallet.chainerrors import (
    ChainError,
    InsufficientFunds,
    RevertError,
    RpcUnavailable,
    TxTimeout,
    WrongChain,
    decode_revert,
    revert_data_of,
)
from wallet.config import ChainConfig
from wallet.contracts import load_artifact
from wallet.devchain import EmbeddedChain
from wallet.events import TransactionFailed, TransactionMined
from wallet.signer import LocalSigner

log = component_logger("wallet.chain")
T = TypeVar("T")
GAS_MARGIN = 1.25  # estimates are exact for the state they ran on; state moves before mining
_TRANSIENT = (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction."""

    tx_hash: str
    gas_used: int
    block_number: int
    receipt: TxReceipt
    seconds: float  # from signing to receipt

    @property
    def contract_address(self) -> str | None:
        address = self.receipt.get("contractAddress")
        return str(address) if address else None


class ChainClient:
    """Transactions and calls on one chain, signed by ``signer`` (None: read-only)."""

    def __init__(
        self,
        w3: Web3,
        signer: LocalSigner | None = None,
        *,
        expected_chain_id: int | None = None,
        receipt_timeout: float = 120.0,
        retries: int = 3,
        retry_delay: float = 0.5,
        poll_interval: float = 0.05,
        bus: EventBus | None = None,
    ) -> None:
        self.w3 = w3
        self.bus = bus
        self.signer = signer
        self.receipt_timeout = receipt_timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self._nonce_lock = threading.Lock()
        self._next_nonce: int | None = None
        self.chain_id: int = self._retry("eth_chainId", lambda: int(w3.eth.chain_id))
        if expected_chain_id is not None and self.chain_id != expected_chain_id:
            raise WrongChain(
                f"the endpoint serves chain id {self.chain_id} but the network profile names "
                f"{expected_chain_id}: check the JSON-RPC URL in the profile"
            )

    @classmethod
    def connect(
        cls, url: str, signer: LocalSigner | None = None, *, rpc_timeout: float = 30.0, **kwargs: Any
    ) -> ChainClient:
        """A client for the JSON-RPC endpoint at ``url``."""
        w3 = Web3(
            HTTPProvider(url, request_kwargs={"timeout": rpc_timeout}, exception_retry_configuration=None)
        )
        try:
            return cls(w3, signer, **kwargs)
        except WrongChain:
            raise
        except Exception as exc:  # HTTP 404, TLS, a proxy's HTML page...: all mean "not a node here"
            raise RpcUnavailable(f"cannot use the JSON-RPC endpoint {url}: {exc}") from None

    @classmethod
    def from_config(
        cls,
        config: ChainConfig,
        url: str,
        signer: LocalSigner | None = None,
        *,
        expected_chain_id: int | None = None,
        bus: EventBus | None = None,
    ) -> ChainClient:
        """A client for ``url`` with the timeouts and retries of the ``[chain]`` config section."""
        return cls.connect(
            url,
            signer,
            rpc_timeout=config.rpc_timeout,
            expected_chain_id=expected_chain_id,
            receipt_timeout=config.receipt_timeout,
            retries=config.retries,
            retry_delay=config.retry_delay,
            bus=bus,
        )

    @classmethod
    def embedded(cls, chain: EmbeddedChain, signer: LocalSigner | None = None, **kwargs: Any) -> ChainClient:
        """A client of an in-process embedded chain (same code path as JSON-RPC)."""
        return cls(Web3(chain.provider()), signer, **kwargs)

    # --- reads ---------------------------------------------------------------------------

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name)["abi"])

    def call(self, fn: ContractFunction, sender: str | None = None) -> Any:
        """Run a view function (errors decoded)."""
        params: TxParams = {"from": Web3.to_checksum_address(sender)} if sender else {}
        return self._guard(fn.fn_name, lambda: fn.call(params))

    def balance(self, address: str) -> int:
        return self._retry(
            "eth_getBalance", lambda: int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))
        )

    def block_timestamp(self) -> int:
        return self._retry("eth_getBlockByNumber", lambda: int(self.w3.eth.get_block("latest")["timestamp"]))

    def advance_time(self, seconds: int) -> None:
        """Move a dev chain's clock forward (anvil and the embedded chain; real chains refuse)."""
        manager = self.w3.manager
        self._guard(
            "evm_increaseTime", lambda: manager.request_blocking(RPCEndpoint("evm_increaseTime"), [seconds])
        )
        self._guard("evm_mine", lambda: manager.request_blocking(RPCEndpoint("evm_mine"), []))

    # --- transactions ----------------------------------------------------------------------

    def transact(self, fn: ContractFunction, value: int = 0) -> TxResult:
        """Sign, send and await a contract call; ``RevertError`` says why it would fail."""

        def run() -> TxResult:
            params: TxParams = {"from": self._require_signer().address, "value": value}  # type: ignore[typeddict-item]
            gas = self._guard(f"{fn.fn_name} (gas estimate)", lambda: fn.estimate_gas(params))
            data = fn._encode_transaction_data()
            return self._send({"to": fn.address, "data": data, "value": value}, gas, fn.fn_name)

        return self._announce(fn.fn_name, run)

    def deploy(self, name: str, *args: Any) -> TxResult:
        """Deploy the committed contract ``name`` with constructor ``args``."""

        def run() -> TxResult:
            artifact = load_artifact(name)
            factory = self.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
            data = factory.constructor(*args).data_in_transaction
            tx: TxParams = {"from": self._require_signer().address, "data": data}
            gas = self._guard(f"deploy {name} (gas estimate)", lambda: self.w3.eth.estimate_gas(tx))
            return self._send({"data": data, "value": 0}, gas, f"deploy {name}")

        return self._announce(f"deploy {name}", run)

    def send_value(self, to: str, wei: int) -> TxResult:
        tx = {"to": Web3.to_checksum_address(to), "value": wei, "data": b""}
        return self._announce("transfer", lambda: self._send(tx, 21000, "transfer"))

    def _announce(self, what: str, action: Callable[[], TxResult]) -> TxResult:
        """Run a transaction and tell the event bus how it ended (mined, or refused and why)."""
        sender = self._require_signer().address
        try:
            result = action()
        except ChainError as exc:
            if self.bus is not None:
                self.bus.emit(TransactionFailed(what=what, sender=sender, reason=str(exc)))
            raise
        if self.bus is not None:
            self.bus.emit(
                TransactionMined(
                    what=what,
                    tx_hash=result.tx_hash,
                    sender=sender,
                    gas_used=result.gas_used,
                    block_number=result.block_number,
                    seconds=result.seconds,
                )
            )
        return result

    def _send(self, tx: dict[str, Any], gas_estimate: int, what: str) -> TxResult:
        signer = self._require_signer()
        gas = gas_estimate if gas_estimate == 21000 else int(gas_estimate * GAS_MARGIN)
        fees = self._fees()
        cost = gas * fees.get("maxFeePerGas", fees.get("gasPrice", 0)) + int(tx.get("value", 0))
        have = self.balance(signer.address)
        if have < cost:
            raise InsufficientFunds(
                f"{what}: {signer.address} holds {have} wei but this transaction may cost up to {cost} wei "
                "(gas x fee + value): fund the account on this chain"
            )
        started = time.monotonic()
        with self._nonce_lock:
            try:
                tx_hash = self._sign_and_send(signer, {**tx, **fees, "gas": gas})
            except Web3RPCError as exc:
                if "nonce too low" not in str(exc).lower():
                    raise node_error(what, exc) from None
                # Another client of this key sent meanwhile: re-read the nonce and try once more.
                tx_hash = self._sign_and_send(signer, {**tx, **fees, "gas": gas})
        receipt = self._await_receipt(tx_hash, what)
        elapsed = time.monotonic() - started
        if receipt["status"] != 1:
            raise self._failure(tx, receipt, what)
        log.info(
            "%s mined in block %d, gas %d, %.3f s", what, receipt["blockNumber"], receipt["gasUsed"], elapsed
        )
        return TxResult(tx_hash, int(receipt["gasUsed"]), int(receipt["blockNumber"]), receipt, elapsed)

    def _sign_and_send(self, signer: LocalSigner, tx: dict[str, Any]) -> str:
        """Sign ``tx`` with the next nonce and send it; the nonce is re-read after any failure."""
        nonce = self._take_nonce(signer.address)
        raw = signer.sign_transaction({**tx, "nonce": nonce, "chainId": self.chain_id})
        tx_hash = "0x" + keccak(raw).hex()
        try:
            self._retry("eth_sendRawTransaction", lambda: self.w3.eth.send_raw_transaction(raw), tx_hash)
        except BaseException:
            self._next_nonce = None
            raise
        return tx_hash

    def _fees(self) -> dict[str, int]:
        block = self._retry("eth_getBlockByNumber", lambda: self.w3.eth.get_block("latest"))
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": int(self._retry("eth_gasPrice", lambda: self.w3.eth.gas_price))}
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            tip = 10**9
        return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * int(base) + tip}

    def _take_nonce(self, address: str) -> int:
        chain_nonce = int(
            self._retry(
                "eth_getTransactionCount",
                lambda: self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending"),
            )
        )
        nonce = chain_nonce if self._next_nonce is None else max(chain_nonce, self._next_nonce)
        self._next_nonce = nonce + 1
        return nonce

    def _await_receipt(self, tx_hash: str, what: str) -> TxReceipt:
        deadline = time.monotonic() + self.receipt_timeout
        while True:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                pass
            except _TRANSIENT as exc:
                log.warning("receipt poll for %s failed (%s); retrying", tx_hash, exc)
            except TimeExhausted:
                pass
            if time.monotonic() > deadline:
                raise TxTimeout(
                    f"{what}: transaction {tx_hash} was not mined within {self.receipt_timeout:g} s; it may"
                    " still be pending (fee too low or node congested): check it later before resending"
                )
            time.sleep(self.poll_interval)

    def _failure(self, tx: dict[str, Any], receipt: TxReceipt, what: str) -> ChainError:
        """Replay a failed transaction as a call at its block to learn the revert reason."""
        call: TxParams = {"from": self._require_signer().address, **tx}  # type: ignore[typeddict-item]
        block = receipt["blockNumber"] - 1
        try:
            self.w3.eth.call(call, block)
        except Exception as exc:
            data = revert_data_of(exc)
            if data is not None:
                err = decode_revert(data)
                return RevertError(f"{what}: {err}", err.name, err.error_args)
        return RevertError(f"{what}: transaction {receipt['transactionHash']!r} failed (out of gas?)")

    def _require_signer(self) -> LocalSigner:
        if self.signer is None:
            raise ChainError("this chain client is read-only: unlock a wallet to send transactions")
        return self.signer

    # --- error handling ------------------------------------------------------------------

    def _guard(self, what: str, action: Callable[[], T]) -> T:
        """Run ``action`` with retries; decode reverts and node errors into ``ChainError``."""
        try:
            return self._retry(what, action)
        except ChainError:
            raise
        except Exception as exc:
            data = revert_data_of(exc)
            if data is not None:
                err = decode_revert(data)
                raise RevertError(f"{what}: {err}", err.name, err.error_args) from None
            raise node_error(what, exc) from None

    def _retry(self, what: str, action: Callable[[], T], tx_hash: str | None = None) -> T:
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                return action()
            except _TRANSIENT as exc:
                if attempt == self.retries:
                    raise RpcUnavailable(f"{what}: the JSON-RPC endpoint is unreachable ({exc})") from None
                log.warning("%s: transient error (%s); retry %d in %.1f s", what, exc, attempt + 1, delay)
                time.sleep(delay)
                delay *= 2
            except Web3RPCError as exc:
                text = str(exc).lower()
                if tx_hash is not None and ("already known" in text or "already imported" in text):
                    return None  # type: ignore[return-value]  # an earlier attempt got through
                if "insufficient funds" in text:
                    raise InsufficientFunds(
                        f"{what}: the sender cannot pay gas x fee + value: fund the account"
                    ) from None
                raise
        raise AssertionError("unreachable")


def node_error(what: str, exc: BaseException) -> ChainError:
    text = str(exc)
    if "insufficient funds" in text.lower():
        return InsufficientFunds(f"{what}: the sender cannot pay gas x fee + value: fund the account")
    return ChainError(f"{what} failed: {type(exc).__name__}: {text[:300]}")
