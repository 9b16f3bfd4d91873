"""Small services for the node tests, and a ``create_service`` so ``plug_in`` can load this module."""

from __future__ import annotations

import trio

from node.service import CoreContext, TaskStatus


class RecordingService:
    """Records its lifecycle in ``journal``; optionally fails at start or after it."""

    def __init__(self, name: str, journal: list[str], fail_at_start: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.fail_at_start = fail_at_start
        self.crash = trio.Event()

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
        if self.fail_at_start:
            raise RuntimeError(f"{self.name} cannot bind its port")
        self.journal.append(f"start {self.name}")
        task_status.started()
        try:
            await self.crash.wait()
            raise RuntimeError(f"{self.name} lost its socket")
        finally:
            self.journal.append(f"cancelled {self.name}")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")

    def identity(self) -> dict[str, str]:
        return {f"{self.name}_id": "id-of-" + self.name}


def create_service(core: CoreContext) -> RecordingService:
    return RecordingService("plugged", [])
