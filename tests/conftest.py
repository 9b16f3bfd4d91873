"""Suite-wide settings: offscreen Qt, no torch.compile, no hub, and an isolated MAGNET_HOME."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Never read the developer's own config file or keyring during tests.
os.environ["MAGNET_CONFIG"] = os.path.join(os.path.dirname(__file__), "no-such-config.toml")
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def magnet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data directory, exported as MAGNET_HOME for the test."""
    home = tmp_path / "magnet-home"
    home.mkdir()
    monkeypatch.setenv("MAGNET_HOME", str(home))
    yield home


@pytest.fixture
def shared_datasets() -> Path:
    """../shared/datasets beside the clone (real public data; see its README for licences)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent: the shared datasets sit beside the clone in CI")
    return SHARED_DATASETS


@pytest.fixture
def thread_leak_check() -> Callable[[], Callable[[], list[str]]]:
    """``leaked = thread_leak_check()`` before, ``assert leaked() == []`` after: names of threads
    started in between that are still alive. Compares thread sets, not counts, because a thread left
    over from an earlier test may end meanwhile (a count then drops and hides a leak, or fails)."""

    def take() -> Callable[[], list[str]]:
        before = set(threading.enumerate())
        return lambda: sorted(t.name for t in set(threading.enumerate()) - before)

    return take
