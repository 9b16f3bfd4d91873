"""Wallet: address (copy), payout address, token balance on chain, pending and claimable rewards with
a Claim button, receipts with their verification, an earnings chart, keystore export and the
recovery phrase behind the password (scrypt runs on a pool thread, never on the GUI's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.bridge import CoreBridge
from desktop.charts import LazyChart
from desktop.errors import in_words
from desktop.screens.common import clock, fill_table, make_table, short, tokens
from desktop.snapshot import Snapshot

HEADERS = ["Received", "Task", "Rank", "Epoch", "Amount", "Reward", "Verification"]


class WalletScreen(QWidget):
    claim_clicked = Signal()

    def __init__(self, bridge: CoreBridge, wallet_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge, self.wallet_dir = bridge, wallet_dir
        self.address = QLabel("Address: (unlocking the wallet...)")
        self.address.setTextInteractionFlags(self.address.textInteractionFlags())
        self.copy = QPushButton("Copy address")
        self.copy.clicked.connect(self._copy_address)
        self.payout = QLabel("Payout address: -")
        self.balance = QLabel("Token balance on chain: not read yet")
        self.rewards = QLabel("Pending: -   Claimable: -")
        self.claim = QPushButton("Claim rewards")
        self.claim.setEnabled(False)
        self.claim.clicked.connect(self.claim_clicked.emit)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = make_table(HEADERS)
        self.chart = LazyChart("Earnings over time", "MAG (total)", "time (s since first receipt)")
        self.export = QPushButton("Export keystore...")
        self.export.clicked.connect(self._export)
        self.reveal = QPushButton("Show recovery phrase...")
        self.reveal.clicked.connect(self._ask_reveal)
        self._address_value = ""
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.address, 1)
        row.addWidget(self.copy)
        layout.addLayout(row)
        for widget in (self.payout, self.balance, self.rewards):
            layout.addWidget(widget)
        actions = QHBoxLayout()
        for button in (self.claim, self.export, self.reveal):
            actions.addWidget(button)
        actions.addStretch(1)
        layout.addLayout(actions)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("<b>Receipts</b> (signed by the validator; checked again here)"))
        layout.addWidget(self.table, 1)
        layout.addWidget(self.chart, 1)

    def set_identity(self, address: str, payout: str) -> None:
        self._address_value = address
        self.address.setText(f"Address: {address}")
        self.payout.setText(f"Payout address: {payout or address}")

    def show_balance(self, units: int | None, error: str = "") -> None:
        self.balance.setText(
            f"Token balance on chain: {tokens(units)}"
            if units is not None
            else f"Token balance on chain: cannot read it now ({error})"
        )

    def show_snapshot(self, snap: Snapshot) -> None:
        if snap.address and snap.address != self._address_value:
            self.set_identity(snap.address, self.payout.text().removeprefix("Payout address: ").strip("-"))
        pending = sum(r.amount for r in snap.receipts if r.reward == "pending proof")
        self.rewards.setText(
            f"Pending (waiting for the epoch proof): {tokens(pending)}   "
            f"Claimable: {tokens(snap.claimable)}   Claimed: {tokens(snap.claimed)}"
        )
        self.claim.setEnabled(snap.claimable > 0)
        fill_table(
            self.table,
            [
                [
                    clock(r.received_at),
                    short(r.task_id),
                    f"{r.rank} of {r.pool_size}",
                    str(r.epoch),
                    tokens(r.amount),
                    r.reward,
                    r.verification,
                ]
                for r in reversed(snap.receipts)
            ],
        )
        if snap.receipts:
            first, total, xs, ys = snap.receipts[0].received_at, 0, [], []
            for r in snap.receipts:
                total += r.amount
                xs.append(r.received_at - first)
                ys.append(total / 1e18)
            self.chart.set_data(xs, ys)

    def receipt_rows(self) -> int:
        return self.table.rowCount()

    def _copy_address(self) -> None:
        QGuiApplication.clipboard().setText(self._address_value)
        self.status.setText("Address copied.")

    def _export(self) -> None:
        target, _ = QFileDialog.getSaveFileName(
            self, "Export keystore", str(Path.home() / "magnet-keystore.json")
        )
        if target:
            self.bridge.run_in_thread(
                export_keystore,
                self.wallet_dir,
                Path(target),
                done=lambda p: self.status.setText(
                    f"Keystore saved to {p} (still encrypted with your password)."
                ),
                failed=self._failed,
            )

    def _ask_reveal(self) -> None:
        password, ok = QInputDialog.getText(
            self, "Show recovery phrase", "Your wallet password:", QLineEdit.EchoMode.Password
        )
        if ok and password:
            self.status.setText("Checking the password...")
            self.bridge.run_in_thread(
                reveal_mnemonic, self.wallet_dir, password, done=self._show_phrase, failed=self._failed
            )

    def _show_phrase(self, phrase: str) -> None:
        self.status.setText("")
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Recovery phrase",
            "Write these words down and keep them offline. Anyone with them owns the wallet.",
            parent=self,
        )
        box.setInformativeText(phrase)
        box.open()

    def _failed(self, error: BaseException) -> None:
        self.status.setText(in_words(error))

    def on_event_miner_receipt_received(self, event: Any) -> None:
        self.status.setText(
            f"New receipt: rank {event.rank} of {event.pool_size}, {tokens(event.amount)}"
            if event.verified
            else f"A receipt was refused: {event.reason}"
        )

    def on_event_miner_claimed(self, event: Any) -> None:
        self.status.setText(f"Claimed {tokens(event.amount)} for epoch {event.epoch}.")


def export_keystore(wallet_dir: Path, target: Path) -> Path:
    from wallet.walletdir import WalletDir

    return WalletDir(wallet_dir).export_keystore(target)


def reveal_mnemonic(wallet_dir: Path, password: str) -> str:
    from wallet.walletdir import WalletDir

    return WalletDir(wallet_dir).reveal_mnemonic(password)
