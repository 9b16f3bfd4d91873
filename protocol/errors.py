"""Errors raised by the wire protocol.

Everything that enters from the network goes through a decoder in this package; any malformed input
raises one of these (never a bare ``KeyError``, ``json.JSONDecodeError`` or ``RecursionError``), so a
caller needs exactly one ``except ProtocolError`` at its boundary and can count the reason by class.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message, signature or bundle is malformed or fails a check."""


class DecodeError(ProtocolError):
    """Bytes are not a well-formed, canonical encoding of a known message."""


class FieldError(DecodeError):
    """A message field has the wrong type, is out of range, or breaks a cross-field rule."""


class OversizeError(ProtocolError):
    """Input exceeds a size cap (message bytes, string, array, bundle file or total)."""


class SignatureError(ProtocolError):
    """A signature is malformed, non-canonical or does not recover to a valid signer."""


class BundleError(ProtocolError):
    """An artifact bundle is malformed, unsafe or fails a hash or cap check."""


class UnknownMessageType(DecodeError):
    """A message names a (type, version) pair this implementation has never released."""
