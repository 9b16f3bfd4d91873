"""The wallet's section of ``magnet status``: read-only, no password, no chain access."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def status_section(config: Any, data_dir: Any) -> dict[str, Any]:
    """Accounts, hot and payout addresses, and how many receipts wait for a proof or a claim."""
    from wallet.walletdir import NoWallet, WalletDir

    root = (
        Path(config.wallet.keystore_file).expanduser().parent
        if config.wallet.keystore_file
        else data_dir.wallet
    )
    wallet = WalletDir(root)
    try:
        accounts = wallet.accounts()
    except NoWallet:
        return {"wallet": "none: `magnet init` or `magnet wallet create`"}
    except ValueError as exc:  # an unreadable metadata or keystore file: report, do not crash status
        return {"wallet": f"unreadable: {exc}"}
    return {
        "accounts": len(accounts),
        "hot": wallet.hot_address,
        "payout": wallet.payout_address,
        "recovery_phrase": "sealed" if wallet.mnemonic_file.exists() else "none (imported key)",
        "receipts": _count(Path(data_dir.root) / "receipts"),
    }


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*/*.json")) if folder.is_dir() else 0
