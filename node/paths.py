"""The data directory: where it is, what it holds, and the lock that keeps it to one process.

The directory comes from config ``node.data_dir``, else ``MAGNET_HOME``, else the platform data
directory. It is created private (0700) because it holds the keystore, the peer key and the store.
While a node runs it holds an exclusive ``fcntl.flock`` on ``magnet.lock`` (released by the kernel
when the process dies, so a crash never leaves a stale lock); a second process gets
``DataDirInUse`` naming the directory and the pid that holds it.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import platformdirs

APP_NAME = "magnet"
PRIVATE_DIR_MODE = 0o700
LOCK_FILE = "magnet.lock"
SUBDIRS = ("wallet", "blobs", "logs", "p2p", "tmp")
# Directories a data dir must never be: creating one makes it 0700.
NOT_A_DATA_DIR = frozenset({Path("/"), Path.home().resolve(), Path("/tmp"), Path("/var/tmp")})


class DataDirError(OSError):
    """The data directory cannot be created or used."""


class DataDirInUse(DataDirError):
    """Another process (or another node in this process) holds the data directory's lock."""

    def __init__(self, root: Path, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"data directory {root} is in use by {holder}. Stop that node first, or give this one "
            f"its own directory with MAGNET_HOME=/some/other/dir (or node.data_dir in the config)."
        )
        self.root = root
        self.pid = pid


def resolve_data_dir(configured: str = "", env: Mapping[str, str] | None = None) -> Path:
    """``configured`` (config ``node.data_dir``), else ``MAGNET_HOME``, else the platform data dir."""
    env = os.environ if env is None else env
    if configured:
        return Path(configured).expanduser().resolve()
    if env.get("MAGNET_HOME"):
        return Path(env["MAGNET_HOME"]).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME)).resolve()


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700; a file in the way is a clear error."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR_MODE)
    except FileExistsError as exc:
        raise DataDirError(f"{path} exists and is not a directory: move it away or choose another") from exc
    except PermissionError as exc:
        raise DataDirError(f"cannot create {path}: permission denied; choose a directory you own") from exc


@dataclass
class DataDir:
    """The layout of one data directory, and (once ``lock()``ed) this process's claim on it."""

    root: Path
    _lock_fd: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def wallet(self) -> Path:
        return self.root / "wallet"

    @property
    def keystore(self) -> Path:
        return self.wallet / "keystore.json"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "magnet.log"

    @property
    def p2p(self) -> Path:
        return self.root / "p2p"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def store(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def locked(self) -> bool:
        return self._lock_fd is not None

    def create(self) -> DataDir:
        """Create the root and every sub-directory, all private (0700, even if they existed)."""
        if self.root in NOT_A_DATA_DIR:
            raise DataDirError(
                f"{self.root} cannot be the data directory (its permissions would become 0700): "
                "choose a dedicated directory, e.g. ~/.local/share/magnet"
            )
        make_private_dir(self.root)
        for name in SUBDIRS:
            make_private_dir(self.root / name)
        return self

    def lock(self) -> DataDir:
        """Create the layout and take the lock for this process's lifetime (until ``unlock()``)."""
        if self._lock_fd is not None:
            return self
        self.create()
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirInUse(self.root, lock_holder(self.lock_file)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        """Release the lock (the file stays: removing it would race with a new holder)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> DataDir:
        return self.lock()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unlock()


def lock_holder(lock_file: Path) -> int | None:
    """The pid written in ``lock_file`` by its holder, or None when unreadable."""
    try:
        text = lock_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def is_locked(root: Path) -> int | None:
    """The pid of the process holding ``root``'s lock, 0 if held by an unknown pid, None if free.

    Probes with a shared non-blocking flock so it never disturbs a running node.
    """
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return lock_holder(path) or 0
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
