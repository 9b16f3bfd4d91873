"""The p2p section of ``magnet status``: read-only (no libp2p import, no running node needed)."""

from __future__ import annotations

import json
import time
from typing import Any

from node.config import Config
from node.paths import DataDir


def status_section(config: Config, data_dir: DataDir) -> dict[str, Any]:
    key_file = data_dir.root / config.p2p.key_file
    book_file = key_file.parent / "peers.json"
    section: dict[str, Any] = {"peer_key": str(key_file) if key_file.exists() else None}
    try:
        book = json.loads(book_file.read_text(encoding="utf-8"))
        section.update(peer_id=book.get("peer_id"), peers_known=len(book.get("peers", [])),
                       peers_connected=len(book.get("connected", [])))
        section.update(_validators(book.get("validators")))
    except (OSError, ValueError, TypeError, AttributeError):
        section.update(peer_id=None, peers_known=0, peers_connected=0)
    blobs = data_dir.root / config.p2p.blob_dir / "objects"
    paths = blobs.glob("*/*") if blobs.is_dir() else []
    sizes = [p.stat().st_size for p in paths if p.suffix == "" and p.is_file()]
    section.update(blobs=len(sizes), blob_bytes=sum(sizes))
    return section


def _validators(summary: Any) -> dict[str, Any]:
    """Who this node accepts as validators: the chain set's size and age, the profile's list."""
    if not isinstance(summary, dict):
        return {}
    chain, read_at = summary.get("chain"), summary.get("read_at")
    lines: dict[str, Any] = {"validators_static": summary.get("static", 0)}
    if chain is None:
        lines["validators_chain"] = "not read (the profile names no JSON-RPC endpoint)"
        return lines
    age = f"{time.time() - read_at:.0f} s ago" if isinstance(read_at, (int, float)) else "never read"
    lines.update(validators_chain=chain, validators_read=age)
    if summary.get("error"):
        lines["validators_error"] = summary["error"]
    return lines
