"""The Wallet screen's token balance with one plain JSON-RPC ``eth_call`` (stdlib only, no Qt).

``wallet.chain`` would do the same through web3, but importing web3 is ~1.7 s of pure-Python work
and building a client and its contract objects another ~0.1 s each time: on a pool thread of the
GUI process that holds the GIL in 5 ms slices against the GUI thread for all of it, and the first
balance request came 15 s into mining. Two fixed selectors and ``urllib`` need none of that.
"""

from __future__ import annotations

import json
from typing import Any

SELECTOR_TOKEN = "fc0c546a"  # token()
SELECTOR_BALANCE_OF = "70a08231"  # balanceOf(address)
TIMEOUT_S = 5.0
MAX_REPLY_BYTES = 1 << 16


class RpcUnavailable(Exception):
    """The JSON-RPC endpoint did not answer, or not as a node does (named like wallet.chain's, so
    desktop.errors puts it in the same words)."""


def _address_word(address: str) -> str:
    hex_part = address.lower().removeprefix("0x")
    if len(hex_part) != 40 or any(c not in "0123456789abcdef" for c in hex_part):
        raise ValueError(f"not an address: {address!r}")
    return hex_part.rjust(64, "0")


def eth_call(rpc_url: str, to: str, data: str, timeout: float = TIMEOUT_S) -> str:
    """``eth_call`` at the latest block; the hex result (``0x...``)."""
    import urllib.request  # ~50 ms (http, email, ssl): here, off the app's start path

    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_call",
            "params": [{"to": "0x" + to.lower().removeprefix("0x"), "data": "0x" + data}, "latest"],
        }
    ).encode()
    request = urllib.request.Request(rpc_url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply: Any = json.loads(response.read(MAX_REPLY_BYTES))
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused; a reply that is not JSON
        raise RpcUnavailable(f"cannot use the JSON-RPC endpoint {rpc_url}: {exc}") from None
    if not isinstance(reply, dict) or "error" in reply or not isinstance(reply.get("result"), str):
        raise RpcUnavailable(f"the JSON-RPC endpoint {rpc_url} answered {str(reply)[:200]}")
    return str(reply["result"])


def token_balance(rpc_url: str, registry: str, address: str, token: str = "") -> int:
    """The MAGNET token balance of ``address``; the token is the registry's unless given."""
    if not token:
        token = "0x" + eth_call(rpc_url, registry, SELECTOR_TOKEN)[-40:]
    result = eth_call(rpc_url, token, SELECTOR_BALANCE_OF + _address_word(address))
    return int(result, 16) if result not in ("0x", "") else 0
