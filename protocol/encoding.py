"""Canonical wire encoding of signed messages.

One UTF-8 JSON object per message, keys sorted, no whitespace (the output of RFC 8785 JCS for these
documents, which hold no floats)::

    {"body":{...fields...},"sig":"0x<130 hex>","type":"Receipt","v":1}

``body`` is the typed-data ``message`` (see protocol.schema for the value forms). Decoding is strict
and only accepts the canonical form: it re-encodes what it parsed and rejects any difference, so one
message has exactly one encoding and :func:`message_id` is a sound key for replay caches.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from protocol import messages as _messages  # noqa: F401  (importing registers every released type)
from protocol import strict_json
from protocol.base import lookup
from protocol.errors import DecodeError, OversizeError, SignatureError
from protocol.signing import SIGNATURE_BYTES, SignedMessage

MAX_MESSAGE_BYTES = 65536
ENVELOPE_KEYS = frozenset({"type", "v", "body", "sig"})


def encode(signed: SignedMessage) -> bytes:
    """The canonical bytes of a signed message."""
    envelope = {
        "type": signed.message.TYPE,
        "v": signed.message.VERSION,
        "body": signed.message.to_json(),
        "sig": "0x" + signed.signature.hex(),
    }
    return canonical_json(envelope)


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII not escaped)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> SignedMessage:
    """Parse canonical bytes into a SignedMessage; every malformed input raises a ProtocolError subclass.

    The signature is checked for form only; call ``protocol.signing.recover_signer`` to verify it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"message must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise OversizeError(f"message of {len(data)} bytes exceeds the cap of {max_size} bytes")
    envelope = parse_json(data)
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_KEYS:
        raise DecodeError('message must be a JSON object with exactly the keys "type", "v", "body", "sig"')
    cls = lookup(envelope["type"], envelope["v"])
    signed = SignedMessage(cls.from_json(envelope["body"]), _parse_signature(envelope["sig"]))
    if encode(signed) != data:
        raise DecodeError(
            f"{cls.TYPE} message is not in canonical form (sorted keys, no spaces, checksummed "
            "addresses, lowercase hex); re-encode it with a conforming encoder"
        )
    return signed


def parse_json(data: bytes) -> Any:
    """Strict JSON (see protocol.strict_json); errors are DecodeError."""
    return strict_json.loads(data, "message")


def _parse_signature(raw: Any) -> bytes:
    if not isinstance(raw, str) or len(raw) != 2 + 2 * SIGNATURE_BYTES or not raw.startswith("0x"):
        raise SignatureError(f'"sig" must be 0x followed by {2 * SIGNATURE_BYTES} lowercase hex digits')
    try:
        return bytes.fromhex(raw[2:])
    except ValueError:
        raise SignatureError('"sig" is not hex') from None


def message_id(data: bytes) -> bytes:
    """sha256 of a message's canonical bytes: the key for replay caches and gossip message ids."""
    return hashlib.sha256(bytes(data)).digest()
