"""``NodeCore``: the headless node that the CLI and the desktop app both drive.

It owns the config, the data directory lock, the store, the event bus, the signer, and the services
plugged into it (the p2p host, the miner and validator roles). py-libp2p is trio-only, so the core
runs one trio loop in its own thread; every other thread reaches it through ``submit()`` (a
``concurrent.futures.Future``) or ``call()`` (blocking, with a timeout). Events are emitted on the bus
from the trio thread; subscribers on other threads hand them over themselves (the Qt bridge does).

Services (``node.service.Service``: the p2p host, the miner, the validator) see the core only
through ``node.service.CoreContext``, which ``NodeCore`` implements. Services start in the order
added and stop in reverse order. A service that fails during start makes ``start()`` raise
``ServiceError``; one that fails later emits ``ServiceFailed`` and stops the node, and ``failure``
says why.

Roles are plugged in by name with ``plug_in("miner")``: the core imports ``<package>.service`` lazily
and calls its ``create_service(core)``; a package that has no service module yet is reported as not
available rather than faked.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import importlib.util
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from node.config import Config
from node.events import (
    Event,
    EventBus,
    NodeStarted,
    NodeStopped,
    NodeStopping,
    ServiceFailed,
    ServiceStarted,
)
from node.logs import LogSetup, component_logger, setup_logging
from node.paths import DataDir, resolve_data_dir
from node.profile import NetworkProfile
from node.service import Service, TaskStatus
from node.store import Store

if TYPE_CHECKING:  # eth_account behind it costs ~1 s to import: not on the GUI's start path
    from protocol.signing import SignerLike

log = component_logger("core")
T = TypeVar("T")

# Role name -> module that provides ``create_service(core) -> Service``.
ROLE_MODULES: Mapping[str, str] = {
    "p2p": "p2p.service",
    "miner": "miner.service",
    "validator": "validator.service",
}
NETWORK_ROLES = ("miner", "validator")  # roles that share the node's p2p service
GRACEFUL_SHARE = 0.75  # of node.stop_timeout, for the services' own stop(); the rest for cancellation
NODE_MIGRATIONS = [
    "CREATE TABLE node_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


class CoreError(RuntimeError):
    """The core cannot do what was asked in its current state."""


class CoreNotRunning(CoreError):
    """A call reached a core that is not started or has stopped."""


class CallTimeout(CoreError, TimeoutError):
    """A ``call()`` did not finish in time; the call was cancelled inside the core."""


class ServiceError(CoreError):
    """A service failed to start or failed while running."""


class StopTimeout(CoreError):
    """The core did not stop within ``node.stop_timeout`` seconds."""


class RoleNotAvailable(CoreError):
    """A role was asked for whose package has no service yet."""


class RoleConfigError(CoreError, ValueError):
    """A role's service cannot be made from this config, profile or wallet (the message says why)."""


class _StartWatch:
    """Forwards ``started()`` and remembers that it happened (so a later crash is told apart)."""

    def __init__(self, task_status: TaskStatus[None]) -> None:
        self._task_status = task_status
        self.started_flag = False

    def started(self, value: None = None) -> None:
        self.started_flag = True
        self._task_status.started()


class NodeCore:
    """The node: start it, call into it, subscribe to it, stop it. One per data directory."""

    def __init__(self, config: Config, signer: SignerLike | None = None, log_to_file: bool = True) -> None:
        self.config = config
        self.signer = signer
        self.events = EventBus()
        self.data_dir = DataDir(resolve_data_dir(config.node.data_dir))
        self.failure: BaseException | None = None
        self._log_to_file = log_to_file
        self._services: list[Service] = []
        self._running_services: list[Service] = []
        self._store: Store | None = None
        self._profile: NetworkProfile | None = None
        self._logs: LogSetup | None = None
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop_event: trio.Event | None = None
        self._calls: trio.Nursery | None = None
        self._main_scope: trio.CancelScope | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._abort_start = False
        self._stopped = threading.Event()
        self._lifecycle = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()

    # --- state ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.signer.address if self.signer is not None else ""

    @property
    def running(self) -> bool:
        thread = self._thread
        alive = thread is not None and thread.is_alive()
        return alive and self._ready.is_set() and not self._stopped.is_set()

    @property
    def profile(self) -> NetworkProfile | None:
        """The network profile named by ``node.network`` (loaded and checked once), or None."""
        if self._profile is None and self.config.node.network:
            self._profile = NetworkProfile.load(Path(self.config.node.network).expanduser())
        return self._profile

    @property
    def store(self) -> Store:
        if self._store is None:
            raise CoreNotRunning("the store is open only while the node runs: call start() first")
        return self._store

    def service(self, name: str) -> Service | None:
        return next((s for s in self._services if s.name == name), None)

    def validator_source(self) -> Callable[[], frozenset[str]] | None:
        """What the p2p service reads the validator set with: the profile's registry over its
        JSON-RPC endpoint (``RegistryValidators``), or None when the profile names none."""
        profile = self.profile
        if profile is None or not profile.rpc_url:
            return None
        return RegistryValidators(profile.rpc_url, profile.registry, profile.chain_id)

    def services(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._services)

    def identity(self) -> dict[str, str]:
        """What identifies this node: its address, data directory, and what services add."""
        lines = {"address": self.address or "(no wallet)", "data_dir": str(self.data_dir.root)}
        for svc in self._running_services:
            describe = getattr(svc, "identity", None)
            if callable(describe):
                lines.update({str(k): str(v) for k, v in describe().items()})
        return lines

    def emit(self, ev: Event) -> None:
        self.events.emit(ev)

    # --- services --------------------------------------------------------------------------

    def add_service(self, service: Service) -> None:
        """Attach a service; before ``start()`` it starts with the node, after it starts now."""
        if not isinstance(service, Service):
            raise TypeError(f"{service!r} lacks name, async run(core, task_status) or async stop()")
        if self.service(service.name) is not None:
            raise CoreError(f"a service named {service.name!r} is already attached")
        self._services.append(service)
        if self.running:
            try:
                self.call(self._start_service, service, timeout=self.config.node.start_timeout)
            except BaseException:
                self._services.remove(service)
                raise

    def plug_in(self, role: str) -> Service:
        """Create the service of ``role`` (``p2p``, ``miner``, ``validator``) and attach it.

        A role that uses the network (``NETWORK_ROLES``) gets the node's one p2p service: it is
        plugged in first when missing and the node has a profile and a wallet (miner and
        validator use ``core.service("p2p")``; without it each would open a host of its own).
        The p2p role asked for again returns the one attached."""
        module_name = ROLE_MODULES.get(role)
        if module_name is None:
            raise CoreError(f"unknown role {role!r}; known: {', '.join(ROLE_MODULES)}")
        existing = self.service(role)
        if role == "p2p" and existing is not None:
            return existing
        if (role in NETWORK_ROLES and self.service("p2p") is None and self.signer is not None
                and self.profile is not None):
            self.plug_in("p2p")
        if not role_available(role):
            raise RoleNotAvailable(f"the {role} role is not available yet ({module_name} does not exist)")
        module = importlib.import_module(module_name)
        create = getattr(module, "create_service", None)
        if not callable(create):
            raise RoleNotAvailable(
                f"the {role} role is not available yet ({module_name} has no create_service(core))"
            )
        try:
            service: Service = create(self)
        except ValueError as exc:  # what is missing or wrong in the config, profile or wallet
            raise RoleConfigError(f"the {role} role cannot start: {exc}") from exc
        self.add_service(service)
        return service

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Lock the data dir, open the store, start the trio thread and every service.

        Raises ``DataDirInUse``, ``StoreError`` or ``ServiceError``; on any failure everything
        taken so far is released again.
        """
        with self._lifecycle:
            if self._thread is not None:
                raise CoreError("this NodeCore was already started; make a new one")
            try:
                self._open_resources()
                self._thread = threading.Thread(target=self._thread_main, name="magnet-core", daemon=True)
                self._thread.start()
                if not self._ready.wait(self.config.node.start_timeout):
                    raise ServiceError(
                        f"node did not start within {self.config.node.start_timeout} s "
                        f"(a service never reported started; node.start_timeout sets the limit)"
                    )
                if self._startup_error is not None:
                    error = self._startup_error
                    raise ServiceError(f"node failed to start: {error}") from error
            except BaseException:
                self._abort_start = True  # seen by _main if it has not started its services yet
                if self._ready.is_set():
                    self._request_stop()  # start-up ended (in error): _main stops what did start
                else:
                    self._cancel_everything()  # start-up hangs or was interrupted: cancel it
                self._join_thread(self.config.node.stop_timeout)
                self._release_resources()
                self._stopped.set()
                raise
        self.emit(
            NodeStarted(address=self.address, data_dir=str(self.data_dir.root), services=self.services())
        )
        log.info("node started: address %s, data dir %s", self.address or "(none)", self.data_dir.root)

    def _open_resources(self) -> None:
        self.data_dir.lock()
        settings = self.config.node
        if self._log_to_file:
            self._logs = setup_logging(
                self.data_dir.log_file, settings.log_level, settings.log_max_bytes, settings.log_backups
            )
        self._store = Store(self.data_dir.store)
        self._store.migrate("node", NODE_MIGRATIONS)
        self._remember_address()

    def _remember_address(self) -> None:
        """Record which wallet this data dir belongs to; warn when it changes (mixed state ahead)."""
        row = self.store.query_one("SELECT value FROM node_meta WHERE key = 'address'")
        if row and self.address and row[0] != self.address:
            log.warning("data dir %s was used by %s, now by %s", self.data_dir.root, row[0], self.address)
        if self.address:
            with self.store.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO node_meta VALUES ('address', ?)", (self.address,))

    def _release_resources(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._logs is not None:
            self._logs.close()
            self._logs = None
        self.data_dir.unlock()

    def stop(self, reason: str = "requested") -> None:
        """Stop every service (gracefully, then by cancellation) and release everything.

        Safe to call twice and from any thread but the core's own. Raises ``StopTimeout`` when the
        trio thread outlives ``node.stop_timeout`` (resources are released anyway).
        """
        with self._lifecycle:
            if self._thread is None or self._stopped.is_set():
                return
            self._ensure_not_core_thread("stop()")
            self.emit(NodeStopping(reason=reason))
            log.info("node stopping: %s", reason)
            self._request_stop()
            clean = self._join_thread(self.config.node.stop_timeout)
            self._fail_pending_calls()
            log.info("node stopped%s", "" if clean else " (not cleanly: see the errors above)")
            self._release_resources()
            self._stopped.set()
        self.emit(NodeStopped(clean=clean))
        if not clean:
            raise StopTimeout(f"the node did not stop within {self.config.node.stop_timeout} s")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the node's trio loop ends (stop requested or a service failed)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def run_until_signal(self, ready: Callable[[], None] | None = None) -> int:
        """Run until SIGINT or SIGTERM (or a service failure), then stop. Returns the signal (0: none).

        ``ready`` is called once the handlers are in place (announce "running" there: a signal
        that arrives earlier gets the default action). Must be called from the main thread (only
        it may install signal handlers).
        """
        caught: list[int] = []
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            caught.append(signum)
            wake.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if ready is not None:
                ready()
            # Short waits so the handler's wake-up is seen promptly and a crashed loop is noticed.
            while not wake.is_set() and not self.wait(0.2):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stop(reason=f"signal {signal.Signals(caught[0]).name}" if caught else "loop ended")
        return caught[0] if caught else 0

    def _join_thread(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.error("the core's trio thread is still running after %.1f s", timeout)
            return False
        return True

    def _cancel_everything(self) -> None:
        """No graceful stop: cancel the whole trio loop (a start that failed or hung)."""
        token, scope = self._token, self._main_scope
        if token is None or scope is None:
            return
        try:
            trio.from_thread.run_sync(scope.cancel, trio_token=token)
        except trio.RunFinishedError:
            pass

    def _request_stop(self) -> None:
        token, stop_event = self._token, self._stop_event
        if token is None or stop_event is None:
            return
        try:
            trio.from_thread.run_sync(stop_event.set, trio_token=token)
        except trio.RunFinishedError:
            pass

    # --- calls from other threads ----------------------------------------------------------

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``await fn(*args)`` in the core's trio loop; the future holds its result."""
        self._ensure_not_core_thread("submit()")
        token = self._token
        if token is None or not self.running:
            raise CoreNotRunning("the node is not running: start() it first")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget_call)
        try:
            # Queue it without waiting for the trio thread (one hand-off per call, not two).
            token.run_sync_soon(self._spawn_call, fn, args, future)
        except trio.RunFinishedError:
            future.cancel()
            raise CoreNotRunning("the node stopped before the call could run") from None
        return future

    def _forget_call(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def _fail_pending_calls(self) -> None:
        """Calls queued as the loop ended never ran: their futures must not wait forever."""
        with self._pending_lock:
            pending = list(self._pending)
        for future in pending:
            if future.set_running_or_notify_cancel():
                future.set_exception(CoreNotRunning("the node stopped before the call could run"))

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = 30.0) -> T:
        """``submit()`` and wait up to ``timeout`` seconds; on timeout the call is cancelled."""
        future = self.submit(fn, *args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # only takes effect if it never started; _spawn_call watches it otherwise
            scope = getattr(future, "_magnet_scope", None)
            if scope is not None and self._token is not None:
                try:
                    trio.from_thread.run_sync(scope.cancel, trio_token=self._token)
                except trio.RunFinishedError:
                    pass
            raise CallTimeout(f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s") from None

    def _spawn_call(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], future: Any) -> None:
        try:
            if self._calls is None:
                raise CoreNotRunning("the node is stopping")
            self._calls.start_soon(self._run_call, fn, args, future)
        except Exception as exc:  # runs as a trio callback: an escape would crash the loop
            if future.set_running_or_notify_cancel():
                future.set_exception(CoreNotRunning(f"the call could not start: {exc}"))

    async def _run_call(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], future: Any) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with trio.CancelScope() as scope:
                future._magnet_scope = scope
                try:
                    result = await fn(*args)
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
        finally:
            if not future.done():  # cancelled: by call()'s timeout or because the node stops
                future.set_exception(CoreNotRunning("the call was cancelled (timeout or node stop)"))

    def _ensure_not_core_thread(self, what: str) -> None:
        if self._thread is not None and threading.current_thread() is self._thread:
            raise CoreError(f"{what} from the core's own trio thread would deadlock: await directly")

    # --- the trio side ---------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported, not swallowed: start() and `failure` see it
            log.exception("the core's trio loop crashed")
            self.failure = self.failure or exc
            if not self._ready.is_set():
                self._startup_error = exc
        finally:
            self._token = None
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop_event = trio.Event()
        async with trio.open_nursery() as nursery:
            self._main_scope = nursery.cancel_scope
            # mypy 1.20 rejects every function against trio 0.35's Nursery.start overloads.
            calls: trio.Nursery = await nursery.start(self._serve_calls)  # type: ignore[arg-type]
            self._calls = calls
            try:
                for service in list(self._services):
                    await self._start_service(service, nursery)
            except Exception as exc:
                self._startup_error = exc
                self._stop_event.set()
            if self._abort_start:  # start() gave up (timeout, Ctrl-C) before the token existed
                self._stop_event.set()
            self._ready.set()
            await self._stop_event.wait()
            await self._stop_services()
            self._calls = None
            nursery.cancel_scope.cancel()

    async def _serve_calls(
        self, *, task_status: TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as calls:
            task_status.started(calls)
            await trio.sleep_forever()

    async def _start_service(self, service: Service, nursery: trio.Nursery | None = None) -> None:
        target = nursery or self._calls
        if target is None:
            raise CoreNotRunning("the node is stopping")
        await target.start(self._supervise, service)  # type: ignore[arg-type]  # see _main
        self._running_services.append(service)
        self.emit(ServiceStarted(name=service.name))

    async def _supervise(
        self, service: Service, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        watch = _StartWatch(task_status)
        try:
            await service.run(self, watch)
        except Exception as exc:
            if not watch.started_flag:
                raise ServiceError(f"service {service.name} failed to start: {exc}") from exc
            log.exception("service %s failed", service.name)
            self.failure = exc
            self.emit(ServiceFailed(name=service.name, error=str(exc)))
            if self._stop_event is not None:
                self._stop_event.set()

    async def _stop_services(self) -> None:
        # Graceful stops get most of the budget; cancellation and unwinding get the rest, so the
        # whole stop fits in node.stop_timeout.
        graceful = self.config.node.stop_timeout * GRACEFUL_SHARE
        with trio.move_on_after(graceful) as deadline:
            for service in reversed(self._running_services):
                try:
                    await service.stop()
                except Exception:
                    log.exception("service %s failed while stopping", service.name)
        if deadline.cancelled_caught:
            log.error("services did not stop within %.1f s: cancelling them", graceful)


VALIDATOR_RPC_TIMEOUT = 10.0  # seconds per JSON-RPC read of the validator set


class RegistryValidators:
    """Read the registry's validators: registered, not removed, with an active stake of at least
    ``minStake``. Blocking; ``p2p.validation.ChainAuthorizer`` calls it in a worker thread. One
    ``validatorPage`` call reads 256 of them (``Registry.active_validators``): no log scan from the
    deployment block and no call per validator. Chain errors raise (the caller keeps its last set);
    the connection is made again on the next call."""

    def __init__(self, rpc_url: str, registry: str, chain_id: int | None = None,
                 rpc_timeout: float = VALIDATOR_RPC_TIMEOUT) -> None:
        self.rpc_url = rpc_url
        self.registry_address = registry
        self.chain_id = chain_id
        self.rpc_timeout = rpc_timeout
        self._registry: Any = None
        self._min_stake: int | None = None

    def __call__(self) -> frozenset[str]:
        from wallet.chain import ChainClient
        from wallet.registry import Registry

        try:
            if self._registry is None:
                client = ChainClient.connect(self.rpc_url, None, rpc_timeout=self.rpc_timeout,
                                             expected_chain_id=self.chain_id, retries=1)
                self._registry = Registry(client, self.registry_address)
            return self._read(self._registry)
        except Exception:
            self._registry = None
            raise

    def _read(self, registry: Any) -> frozenset[str]:
        if self._min_stake is None:
            self._min_stake = registry.min_stake()  # immutable in the contract
        staked = registry.active_validators()
        return frozenset(a for a, stake in staked.items() if stake >= self._min_stake)


def role_available(role: str) -> bool:
    """True when ``role``'s package provides its service module."""
    module_name = ROLE_MODULES.get(role)
    if module_name is None:
        return False
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:
        return False

