"""Framing shared by our stream protocols: unsigned-varint length prefixes and JSON headers.

The same framing as libp2p's own length-prefixed protocols (js ``it-length-prefixed``), so a
peer in any language can speak ``/magnet/blob/1.0.0`` and ``/magnet/req/...`` with a few lines.
Every frame has a stated maximum; a longer one is refused before it is read.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from protocol import strict_json

MAX_VARINT_BYTES = 9
MAX_HEADER_BYTES = 4096


class WireError(Exception):
    """A peer sent a malformed or oversize frame, or the stream ended early."""


class ByteStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


class StreamReader:
    """Buffered exact reads over a libp2p stream (``read(n)`` may return fewer bytes)."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _fill(self, wanted: int) -> None:
        while len(self.buffer) < wanted:
            try:
                data = await self.stream.read(max(wanted - len(self.buffer), 65536))
            except Exception as exc:  # StreamEOF / StreamReset / StreamError
                raise WireError(f"stream ended after {len(self.buffer)} of {wanted} bytes: {exc!r}") from exc
            if not data:
                raise WireError(f"stream ended after {len(self.buffer)} of {wanted} bytes")
            self.buffer += data

    async def read_exactly(self, n: int) -> bytes:
        await self._fill(n)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    async def read_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes``: what is buffered, else one read from the stream."""
        if not self.buffer:
            try:
                data = await self.stream.read(max_bytes)
            except Exception as exc:  # StreamEOF / StreamReset / StreamError
                raise WireError(f"stream ended: {exc!r}") from exc
            if not data:
                raise WireError("stream ended")
            return data
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        return data

    async def read_varint(self) -> int:
        value = 0
        for i in range(MAX_VARINT_BYTES):
            byte = (await self.read_exactly(1))[0]
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return value
        raise WireError("length prefix longer than 9 bytes")

    async def read_frame(self, max_bytes: int) -> bytes:
        length = await self.read_varint()
        if length > max_bytes:
            raise WireError(f"frame of {length} bytes exceeds the {max_bytes}-byte cap")
        return await self.read_exactly(length)

    async def read_json(self, max_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
        raw = await self.read_frame(max_bytes)
        try:
            value = strict_json.loads(raw, "frame header", floats=True)
        except ValueError as exc:
            raise WireError(f"header is not UTF-8 JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise WireError("header is not a JSON object")
        return value


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(payload: bytes) -> bytes:
    return encode_varint(len(payload)) + payload


def json_frame(header: dict[str, Any]) -> bytes:
    return frame(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def header_int(header: dict[str, Any], key: str, low: int, high: int) -> int:
    """An integer field of a peer's header, range-checked."""
    value = header.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise WireError(f"header field {key!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def header_str(header: dict[str, Any], key: str, max_len: int = 128) -> str:
    value = header.get(key)
    if not isinstance(value, str) or len(value) > max_len:
        raise WireError(f"header field {key!r} must be a string of at most {max_len} characters")
    return value
