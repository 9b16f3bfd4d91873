"""What the GUI asks of the core: coroutines run in the core's trio loop via ``CoreBridge.run_in_core``.

Anything that may block (stopping a training process, chain calls) moves to a trio worker thread
here, so neither the GUI thread nor the core's loop waits on it.
"""

from __future__ import annotations

from typing import Any


async def start_mining(core: Any) -> str:
    miner = _miner(core)
    miner.start_mining()
    return str(miner.state)


async def stop_mining(core: Any) -> str:
    """Stop taking tasks and stop a running training job (it resumes from its checkpoint later)."""
    import trio  # already loaded by the core; not on the GUI's start path

    miner = _miner(core)
    await trio.to_thread.run_sync(miner.stop_mining)
    return str(miner.state)


async def claim_rewards(core: Any) -> int:
    """Claim every proven, unclaimed reward now; returns how many base units are still unclaimed."""
    miner = _miner(core)
    if miner.registry_factory is None:
        raise RuntimeError("this network has no blockchain address (JSON-RPC) to claim on")
    await miner._claim_all()  # the miner's own claim step (also run by its rewards loop)
    return int(miner.earnings()["claimable"])


def _miner(core: Any) -> Any:
    miner = core.service("miner")
    if miner is None:
        raise RuntimeError("the miner is not running: the node is still starting or has stopped")
    return miner
