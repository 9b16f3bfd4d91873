"""A role whose service starts, then fails: ``magnet --headless`` must exit NODE_FAILED."""

from __future__ import annotations

import trio

from node.service import CoreContext, TaskStatus


class CrashingService:
    name = "crashing"

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(0.3)
        raise RuntimeError("the GPU fell off the bus")

    async def stop(self) -> None:
        pass


def create_service(core: CoreContext) -> CrashingService:
    return CrashingService()
