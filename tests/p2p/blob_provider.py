"""A p2p node in its own process that serves one public blob (tests kill it with SIGKILL).

Usage: python blob_provider.py DATA_DIR BLOB_FILE. Prints one JSON line
{"peer_id": ..., "addrs": [...], "blob": sha256} once it serves, then runs until killed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from p2p_netutil import make_service


async def main(data_dir: Path, blob_file: Path) -> None:
    service = make_service(data_dir, "provider")
    blob_hash = service.store.put_file(blob_file, public=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        hello = {"peer_id": service.peer_id.to_string(), "addrs": service.addrs(), "blob": blob_hash}
        print(json.dumps(hello), flush=True)


if __name__ == "__main__":
    trio.run(main, Path(sys.argv[1]), Path(sys.argv[2]))
