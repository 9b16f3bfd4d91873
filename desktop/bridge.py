"""The one bridge between the node core and Qt.

The core runs headless in its own trio thread (``node.core.NodeCore``); the GUI never touches it
directly. This bridge:

- re-emits every core event as a Qt signal delivered on the GUI thread, and dispatches it to each
  registered listener's ``on_event_<kind>`` handler (``miner.state_changed`` ->
  ``on_event_miner_state_changed``), the Electrum way;
- sends GUI actions into the core with ``run_in_core`` (``core.submit``) and blocking work (the
  keystore's scrypt, chain calls, starting and stopping the core) to a thread pool with
  ``run_in_thread``; results and errors come back as signals, on the GUI thread, to the callbacks
  given. The GUI thread never waits on either.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

if TYPE_CHECKING:
    from node.core import NodeCore
    from node.events import Event

log = logging.getLogger("magnet.desktop")

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]

# The core's life as the GUI shows it.
CORE_NOT_STARTED = "not started"
CORE_STARTING = "starting"
CORE_RUNNING = "running"
CORE_STOPPING = "stopping"
CORE_STOPPED = "stopped"
CORE_FAILED = "failed"


class _Job(QRunnable):
    """``fn(*args)`` on a pool thread; the outcome goes back through the bridge's signal."""

    def __init__(
        self,
        bridge: CoreBridge,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        done: Done | None,
        failed: Failed | None,
    ) -> None:
        super().__init__()
        self.bridge, self.fn, self.args, self.done, self.failed = bridge, fn, args, done, failed

    def run(self) -> None:
        try:
            value = self.fn(*self.args)
        except BaseException as exc:  # delivered to the GUI, never lost on a pool thread
            self._hand_back(None, exc)
        else:
            self._hand_back(value, None)

    def _hand_back(self, value: Any, error: BaseException | None) -> None:
        try:
            self.bridge.finished.emit(self.done, self.failed, value, error)
        except RuntimeError:  # the app quit while this ran: nobody is left to tell
            log.debug("a background job ended after the app quit")


class CoreBridge(QObject):
    """Core events in as signals; GUI actions out as core calls or pool jobs."""

    event_arrived = Signal(object)  # a node.events.Event, emitted on the trio thread, received on ours
    core_state = Signal(str, str)  # CORE_* and a sentence (the error in words when it failed)
    finished = Signal(object, object, object, object)  # done, failed, value, error

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.core: NodeCore | None = None
        self.state = CORE_NOT_STARTED
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(4)
        self._listeners: list[object] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.event_arrived.connect(self._dispatch)
        # Always queued: a call that completes before run_in_core() returns (its done-callback then
        # fires on this thread) must not run `done` re-entrantly, before the caller has even seen the
        # return value (the Wallet screen's snapshot flag was set back to "pending" after its result
        # had arrived, and no snapshot ran again: receipts never showed).
        self.finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    # --- listeners -------------------------------------------------------------------------

    def register(self, listener: object) -> None:
        """``listener.on_event_<kind>(event)`` is called on the GUI thread for each core event."""
        self._listeners.append(listener)

    def _dispatch(self, event: Event) -> None:
        handler_name = "on_event_" + event.kind.replace(".", "_")
        for listener in list(self._listeners):
            handler = getattr(listener, handler_name, None)
            if handler is None:
                continue
            try:
                handler(event)
            except Exception:  # one broken screen must not take the others down
                log.exception("%s failed on %s", handler_name, type(listener).__name__)

    # --- work off the GUI thread ---------------------------------------------------------------

    def run_in_thread(
        self, fn: Callable[..., Any], *args: Any, done: Done | None = None, failed: Failed | None = None
    ) -> None:
        """Blocking ``fn(*args)`` on the pool; ``done(value)`` or ``failed(error)`` on the GUI thread."""
        self.pool.start(_Job(self, fn, args, done, failed))

    def run_in_core(
        self,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        done: Done | None = None,
        failed: Failed | None = None,
    ) -> bool:
        """``await fn(*args)`` in the core's trio loop; False (and nothing runs) if the core is not up."""
        core = self.core
        if core is None or not core.running:
            return False
        try:
            future = core.submit(fn, *args)
        except Exception as exc:
            if failed is not None:
                failed(exc)
            return False

        def hand_back(f: concurrent.futures.Future[Any]) -> None:  # runs on the trio thread
            error = f.exception() if not f.cancelled() else RuntimeError("the call was cancelled")
            self.finished.emit(done, failed, None if error else f.result(), error)

        future.add_done_callback(hand_back)
        return True

    def _deliver(
        self, done: Done | None, failed: Failed | None, value: Any, error: BaseException | None
    ) -> None:
        if error is None:
            if done is not None:
                done(value)
        elif failed is not None:
            failed(error)
        else:
            log.warning("background work failed: %s", error)

    # --- the core's life ---------------------------------------------------------------------

    def start_core(self, build: Callable[[], NodeCore]) -> None:
        """Build and start a core on the pool (``build`` unlocks the wallet: scrypt, ~1 s)."""
        if self.state in (CORE_STARTING, CORE_RUNNING):
            return
        self._set_state(CORE_STARTING, "starting the node")
        self.run_in_thread(self._start, build, done=self._started, failed=self._start_failed)

    def _start(self, build: Callable[[], NodeCore]) -> NodeCore:
        core = build()
        unsubscribe = core.events.subscribe(self.event_arrived.emit)  # before start: no event is missed
        try:
            core.start()
        except BaseException:
            unsubscribe()
            raise
        self._unsubscribe = unsubscribe
        return core

    def _started(self, core: NodeCore) -> None:
        self.core = core
        self._set_state(CORE_RUNNING, f"node running as {core.address}")

    def _start_failed(self, error: BaseException) -> None:
        from desktop.errors import in_words

        log.warning("the node could not start: %s", error)
        self._set_state(CORE_FAILED, in_words(error))

    def stop_core(self, then: Callable[[], None] | None = None) -> None:
        """Stop the core on the pool (it may take node.stop_timeout); ``then()`` afterwards."""
        core = self.core
        if core is None:
            if then is not None:
                then()
            return
        self._set_state(CORE_STOPPING, "stopping the node")
        self.run_in_thread(
            self._stop, core, done=lambda _: self._stopped(then), failed=lambda _e: self._stopped(then)
        )

    def stop_core_now(self) -> None:
        """At exit, when the event loop is gone: stop on this thread."""
        core, self.core = self.core, None
        if core is not None:
            self._stop(core)

    def _stop(self, core: NodeCore) -> None:
        try:
            core.stop(reason="the desktop app closed")
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None

    def _stopped(self, then: Callable[[], None] | None) -> None:
        self.core = None
        self._set_state(CORE_STOPPED, "the node is stopped")
        if then is not None:
            then()

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        self.core_state.emit(state, text)

    def miner(self) -> Any:
        """The miner service of the running core, or None."""
        core = self.core
        return core.service("miner") if core is not None and core.running else None
