"""Fixtures for the desktop tests: fast keystores, a wallet made without the wizard, screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from desktop_helpers import PASSWORD, PHRASE


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keystores with scrypt n=1024 (the real n=2^18 takes ~1 s per unlock on these cores)."""
    monkeypatch.setenv("MAGNET_WALLET__SCRYPT_N", "1024")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "magnet-data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def wallet_data_dir(data_dir: Path) -> Path:
    """A data folder that already holds a wallet (the wizard's result, made directly)."""
    from wallet.walletdir import WalletDir

    WalletDir(data_dir / "wallet", scrypt_n=1024).import_mnemonic(PHRASE, PASSWORD)
    return data_dir


@pytest.fixture
def screens_dir(tmp_path: Path) -> Path:
    path = tmp_path / "screens"
    path.mkdir()
    print(f"\nscreenshots: {path}")
    return path
