"""The network profile: everything a node needs to join one network, as one JSON file.

A profile names the network, its bootstrap peers (multiaddrs ending in ``/p2p/<peer id>``), the EVM
chain (chain id, JSON-RPC URL), the registry and token contracts, a random 32-byte domain salt that
goes into every EIP-712 domain (so a message signed for one network never verifies on another), and on
a devnet the allow-list of validator addresses. The devnet writes one; ``--network FILE`` and the
desktop wizard read one. A profile is input from outside: ``load`` checks every field and says which
one is wrong and how to fix it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from multiaddr import Multiaddr

from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from protocol.signing import Domain

PROFILE_FORMAT = "magnet-network-profile"
PROFILE_VERSION = 1
MAX_PROFILE_BYTES = 256 * 1024
MAX_BOOTSTRAP_PEERS = 64
MAX_VALIDATORS = 1024
SALT_BYTES = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SALT = re.compile(r"^0x[0-9a-fA-F]{64}$")
RPC_SCHEMES = ("http", "https", "ws", "wss")
FIELDS = (
    "format", "version", "name", "chain_id", "rpc_url", "registry", "token",
    "domain_salt", "bootstrap_peers", "validators",
)


class ProfileError(ValueError):
    """A network profile file is missing, malformed or has an invalid field."""


@dataclass(frozen=True)
class NetworkProfile:
    """One network's coordinates. Immutable: ``with_peers()`` and friends return a new profile."""

    name: str
    chain_id: int
    rpc_url: str
    registry: str
    token: str
    domain_salt: bytes
    bootstrap_peers: tuple[str, ...] = ()
    validators: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_name(self.name)
        chain_id = self.chain_id
        if not isinstance(chain_id, int) or isinstance(chain_id, bool) or not 0 < chain_id < 2**64:
            raise ProfileError(f"chain_id must be a positive integer below 2^64, got {self.chain_id!r}")
        _check_rpc_url(self.rpc_url)
        object.__setattr__(self, "registry", _address(self.registry, "registry"))
        object.__setattr__(self, "token", _address(self.token, "token"))
        if not isinstance(self.domain_salt, bytes) or len(self.domain_salt) != SALT_BYTES:
            raise ProfileError("domain_salt must be exactly 32 bytes (NetworkProfile.new_devnet makes one)")
        object.__setattr__(self, "bootstrap_peers", _check_peers(self.bootstrap_peers))
        object.__setattr__(self, "validators", _check_validators(self.validators))

    @classmethod
    def new_devnet(
        cls,
        chain_id: int,
        rpc_url: str,
        registry: str,
        token: str,
        bootstrap_peers: tuple[str, ...] | list[str] = (),
        validators: tuple[str, ...] | list[str] = (),
        name: str = "devnet",
    ) -> NetworkProfile:
        """A profile for a fresh devnet, with a fresh random domain salt."""
        return cls(
            name=name, chain_id=chain_id, rpc_url=rpc_url, registry=registry, token=token,
            domain_salt=secrets.token_bytes(SALT_BYTES), bootstrap_peers=tuple(bootstrap_peers),
            validators=tuple(validators),
        )

    def with_peers(self, bootstrap_peers: tuple[str, ...] | list[str]) -> NetworkProfile:
        return replace(self, bootstrap_peers=tuple(bootstrap_peers))

    def domain(self) -> Domain:
        """The EIP-712 domain every message of this network is signed under."""
        from protocol.signing import Domain  # lazily: eth_account takes ~1 s to import

        return Domain(chain_id=self.chain_id, verifying_contract=self.registry, salt=self.domain_salt)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "chain_id": self.chain_id,
            "rpc_url": self.rpc_url,
            "registry": self.registry,
            "token": self.token,
            "domain_salt": "0x" + self.domain_salt.hex(),
            "bootstrap_peers": list(self.bootstrap_peers),
            "validators": list(self.validators),
        }

    @classmethod
    def from_json(cls, data: Any) -> NetworkProfile:
        """Check and build a profile from parsed JSON; ``ProfileError`` names the bad field."""
        if not isinstance(data, dict):
            raise ProfileError("a network profile is a JSON object")
        if data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"not a MAGNET network profile (\"format\" must be {PROFILE_FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ProfileError("\"version\" must be a positive integer")
        if version > PROFILE_VERSION:
            raise ProfileError(f"profile version {version} is newer than this MAGNET understands: upgrade")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ProfileError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        missing = sorted(set(FIELDS) - set(data))
        if missing:
            raise ProfileError(f"missing field(s) {', '.join(missing)}")
        salt = data["domain_salt"]
        if not isinstance(salt, str) or not _SALT.match(salt):
            raise ProfileError("domain_salt must be 0x followed by 64 hex digits (32 random bytes)")
        for name in ("bootstrap_peers", "validators"):
            if not isinstance(data[name], list):
                raise ProfileError(f"{name} must be a JSON list")
        return cls(
            name=data["name"], chain_id=data["chain_id"], rpc_url=data["rpc_url"], registry=data["registry"],
            token=data["token"], domain_salt=bytes.fromhex(salt[2:]),
            bootstrap_peers=tuple(data["bootstrap_peers"]), validators=tuple(data["validators"]),
        )

    @classmethod
    def load(cls, path: Path) -> NetworkProfile:
        """Read and check the profile file at ``path``."""
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PROFILE_BYTES + 1)
        except FileNotFoundError:
            raise ProfileError(f"network profile {path} does not exist: check the path") from None
        except OSError as exc:
            raise ProfileError(f"cannot read network profile {path}: {exc.strerror}") from None
        if len(raw) > MAX_PROFILE_BYTES:
            raise ProfileError(f"network profile {path} is over {MAX_PROFILE_BYTES} bytes: not a profile")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProfileError(f"network profile {path} is not valid JSON: {exc}") from None
        try:
            return cls.from_json(data)
        except ProfileError as exc:
            raise ProfileError(f"network profile {path}: {exc}") from None

    def save(self, path: Path) -> None:
        """Write the profile atomically (a reader never sees half a file). It holds no secret."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".profile-", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProfileError(
            f"name must be 1-64 letters, digits, '.', '_' or '-' (first a letter or digit); got {name!r}"
        )


def _check_rpc_url(url: Any) -> None:
    if not isinstance(url, str):
        raise ProfileError(f"rpc_url must be a string, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in RPC_SCHEMES or not parts.hostname:
        raise ProfileError(f"rpc_url must be an http(s):// or ws(s):// URL with a host, got {url!r}")


def _address(value: Any, name: str) -> str:
    from protocol.schema import check_address  # lazily: eth_abi behind it costs ~0.4 s to import

    try:
        return check_address(value, name)
    except ProtocolError as exc:
        raise ProfileError(str(exc)) from None


def _check_peers(peers: Any) -> tuple[str, ...]:
    if len(peers) > MAX_BOOTSTRAP_PEERS:
        raise ProfileError(f"bootstrap_peers: {len(peers)} entries, at most {MAX_BOOTSTRAP_PEERS}")
    checked = []
    for peer in peers:
        if not isinstance(peer, str) or len(peer) > 512:
            raise ProfileError(f"bootstrap_peers: {str(peer)[:80]!r} is not a multiaddr string")
        try:
            addr = Multiaddr(peer)
            peer_id = addr.value_for_protocol("p2p")
        except Exception as exc:  # multiaddr raises several unrelated types for bad input
            raise ProfileError(
                f"bootstrap_peers: {peer!r} is not a dialable multiaddr ending in /p2p/<peer id>: {exc}"
            ) from None
        if not peer_id:
            raise ProfileError(f"bootstrap_peers: {peer!r} lacks /p2p/<peer id>: it cannot be authenticated")
        checked.append(str(addr))
    return tuple(dict.fromkeys(checked))


def _check_validators(validators: Any) -> tuple[str, ...]:
    if len(validators) > MAX_VALIDATORS:
        raise ProfileError(f"validators: {len(validators)} entries, at most {MAX_VALIDATORS}")
    return tuple(dict.fromkeys(_address(v, "validators") for v in validators))
