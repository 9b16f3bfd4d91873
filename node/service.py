"""The plug-in point of the node: what a service is, and what it may use of the core.

The p2p host, the miner and the validator are services. They import this module (a node base
module), never ``node.core``: a service sees the core only through ``CoreContext``.

A service::

    class MinerService:
        name = "miner"

        async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None:
            ...                       # set up (subscribe, open streams, migrate its store tables)
            task_status.started()     # the node counts as started once every service got here
            await trio.sleep_forever()  # serve until cancelled

        async def stop(self) -> None:
            ...                       # graceful part of shutdown; cancellation follows it

and may offer ``identity() -> dict[str, str]`` to add lines to the node's identity (the p2p
service adds its peer id). Its package exposes ``create_service(core) -> Service`` in
``<package>/service.py`` so ``NodeCore.plug_in("<role>")`` can attach it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from node.config import Config
from node.events import Event, EventBus
from node.paths import DataDir
from node.profile import NetworkProfile
from node.store import Store

if TYPE_CHECKING:
    # trio re-exports TaskStatus, but without "as", so mypy does not see the re-export.
    from trio._core._run import TaskStatus

    from protocol.signing import SignerLike
else:
    from trio import TaskStatus

T = TypeVar("T")

__all__ = ["CoreContext", "Service", "TaskStatus"]


class CoreContext(Protocol):
    """What a service may use of the core."""

    config: Config
    data_dir: DataDir
    events: EventBus
    signer: SignerLike | None

    @property
    def store(self) -> Store: ...

    @property
    def profile(self) -> NetworkProfile | None: ...

    @property
    def address(self) -> str: ...

    def emit(self, ev: Event) -> None: ...

    def service(self, name: str) -> Service | None: ...

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> Any: ...


@runtime_checkable
class Service(Protocol):
    name: str

    async def run(self, core: CoreContext, task_status: TaskStatus[None]) -> None: ...

    async def stop(self) -> None: ...
