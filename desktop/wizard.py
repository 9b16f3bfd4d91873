"""First run: create a wallet (show the recovery phrase, confirm a few of its words) or import one, set
the password, choose a payout address, set limits and choose the network.

Everything slow (making the phrase: eth_account's import; the keystore's scrypt) runs on the bridge's
pool; the wizard's pages only wait for the answer (their Next button stays grey meanwhile).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from desktop.bridge import CoreBridge
from desktop.errors import in_words
from desktop.settings import NETWORK_DEVNET, NETWORK_PEERS, NETWORK_PROFILE, DesktopSettings

MIN_PASSWORD_CHARS = 8
CONFIRM_WORDS = 3
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
(
    PAGE_START,
    PAGE_PHRASE,
    PAGE_CONFIRM,
    PAGE_IMPORT,
    PAGE_PASSWORD,
    PAGE_PAYOUT,
    PAGE_LIMITS,
    PAGE_NETWORK,
    PAGE_DONE,
) = range(9)


class StartPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Welcome to MAGNET")
        self.setSubTitle("Your computer fine-tunes models for others and earns tokens. First, a wallet.")
        self.create_new = QRadioButton("Create a new wallet")
        self.restore = QRadioButton("Import a wallet from its recovery phrase")
        self.create_new.setChecked(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.create_new)
        layout.addWidget(self.restore)

    def nextId(self) -> int:
        return PAGE_PHRASE if self.create_new.isChecked() else PAGE_IMPORT


class PhrasePage(QWizardPage):
    """Shows a fresh recovery phrase (made on the pool: eth_account takes ~1 s to import)."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.setTitle("Your recovery phrase")
        self.setSubTitle(
            "Write these words down, in order, and keep them offline. They are the only way "
            "to recover the wallet; nobody else should ever see them."
        )
        self.words = QLabel("Making a new phrase...")
        self.words.setWordWrap(True)
        self.words.setStyleSheet("font-size: 16px; font-family: monospace;")
        QVBoxLayout(self).addWidget(self.words)

    def initializePage(self) -> None:
        if not self.owner.mnemonic:
            self.owner.bridge.run_in_thread(make_phrase, done=self._show, failed=self._failed)

    def _show(self, phrase: str) -> None:
        self.owner.mnemonic = phrase
        words = phrase.split()
        self.words.setText("   ".join(f"{i + 1}. {w}" for i, w in enumerate(words)))
        self.completeChanged.emit()

    def _failed(self, error: BaseException) -> None:
        self.words.setText(in_words(error))

    def isComplete(self) -> bool:
        return bool(self.owner.mnemonic)

    def nextId(self) -> int:
        return PAGE_CONFIRM


class ConfirmPage(QWizardPage):
    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.setTitle("Check that you wrote it down")
        self.setSubTitle("Type the words asked for.")
        self.form = QFormLayout(self)
        self.asked: list[tuple[int, QLineEdit]] = []

    def initializePage(self) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        words = self.owner.mnemonic.split()
        positions = sorted(random.sample(range(len(words)), min(CONFIRM_WORDS, len(words))))
        self.asked = []
        for position in positions:
            field = QLineEdit()
            field.textChanged.connect(lambda *_: self.completeChanged.emit())
            self.form.addRow(f"Word {position + 1}", field)
            self.asked.append((position, field))

    def isComplete(self) -> bool:
        words = self.owner.mnemonic.split()
        return bool(self.asked) and all(f.text().strip().lower() == words[p] for p, f in self.asked)

    def nextId(self) -> int:
        return PAGE_PASSWORD


class ImportPage(QWizardPage):
    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.setTitle("Import a wallet")
        self.setSubTitle("Type your 12 or 24 word recovery phrase, words separated by spaces.")
        self.phrase = QPlainTextEdit()
        self.phrase.textChanged.connect(lambda *_: self.completeChanged.emit())
        QVBoxLayout(self).addWidget(self.phrase)

    def isComplete(self) -> bool:
        return len(self.phrase.toPlainText().split()) in (12, 15, 18, 21, 24)

    def validatePage(self) -> bool:
        self.owner.mnemonic = " ".join(self.phrase.toPlainText().lower().split())
        return True

    def nextId(self) -> int:
        return PAGE_PASSWORD


class PasswordPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Choose a password")
        self.setSubTitle(
            f"It encrypts the wallet file on this computer (at least {MIN_PASSWORD_CHARS} "
            "characters). MAGNET asks for it when it starts."
        )
        self.password, self.again = QLineEdit(), QLineEdit()
        for field in (self.password, self.again):
            field.setEchoMode(QLineEdit.EchoMode.Password)
            field.textChanged.connect(lambda *_: self.completeChanged.emit())
        self.hint = QLabel("")
        form = QFormLayout(self)
        form.addRow("Password", self.password)
        form.addRow("Again", self.again)
        form.addRow(self.hint)

    def isComplete(self) -> bool:
        text = self.password.text()
        ok = len(text) >= MIN_PASSWORD_CHARS and text == self.again.text()
        self.hint.setText(
            "" if ok or not text else f"At least {MIN_PASSWORD_CHARS} characters, the same twice."
        )
        return ok

    def nextId(self) -> int:
        return PAGE_PAYOUT


class PayoutPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Where should rewards go?")
        self.setSubTitle(
            "Leave empty to receive them in this wallet, or give another address you own "
            "(a hardware wallet, say)."
        )
        self.address = QLineEdit()
        self.address.setPlaceholderText("0x... (optional)")
        self.address.textChanged.connect(lambda *_: self.completeChanged.emit())
        QFormLayout(self).addRow("Payout address", self.address)

    def isComplete(self) -> bool:
        text = self.address.text().strip()
        return not text or bool(ADDRESS.match(text))

    def nextId(self) -> int:
        return PAGE_LIMITS


class LimitsPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("How much of this computer may MAGNET use?")
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("all cores")
        self.ram = QSpinBox()
        self.ram.setRange(0, 1 << 20)
        self.ram.setSuffix(" MiB")
        self.ram.setSpecialValueText("what is free")
        self.battery = QCheckBox("Pause on battery")
        self.battery.setChecked(True)
        self.idle = QCheckBox("Mine only when I am not using the computer")
        form = QFormLayout(self)
        form.addRow("CPU threads", self.threads)
        form.addRow("RAM per job", self.ram)
        form.addRow(self.battery)
        form.addRow(self.idle)

    def nextId(self) -> int:
        return PAGE_NETWORK


class NetworkPage(QWizardPage):
    def __init__(self) -> None:
        super().__init__()
        self.setTitle("Which network?")
        self.profile = QRadioButton("A network profile file")
        self.peers = QRadioButton("Bootstrap peers (with a profile for the chain)")
        self.devnet = QRadioButton("Start a local devnet on this computer (to try it out)")
        self.group = QButtonGroup(self)
        for button in (self.profile, self.peers, self.devnet):
            self.group.addButton(button)
            button.toggled.connect(lambda *_: self.completeChanged.emit())
        self.file = QLineEdit()
        self.file.textChanged.connect(lambda *_: self.completeChanged.emit())
        browse = QPushButton("Choose...")
        browse.clicked.connect(self._browse)
        self.peer_list = QLineEdit()
        self.peer_list.setPlaceholderText("/ip4/1.2.3.4/tcp/4001/p2p/12D3..., comma separated")
        self.peer_list.textChanged.connect(lambda *_: self.completeChanged.emit())
        layout = QVBoxLayout(self)
        for button in (self.profile, self.peers, self.devnet):
            layout.addWidget(button)
        row = QHBoxLayout()
        row.addWidget(QLabel("Profile"))
        row.addWidget(self.file, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        layout.addWidget(self.peer_list)
        self.profile.setChecked(True)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Network profile", str(Path.home()), "JSON (*.json)")
        if path:
            self.file.setText(path)

    def mode(self) -> str:
        return (
            NETWORK_DEVNET
            if self.devnet.isChecked()
            else NETWORK_PEERS
            if self.peers.isChecked()
            else NETWORK_PROFILE
        )

    def isComplete(self) -> bool:
        if self.mode() == NETWORK_DEVNET:
            return True
        has_file = Path(self.file.text().strip()).expanduser().is_file()
        return has_file and (self.mode() == NETWORK_PROFILE or bool(self.peer_list.text().strip()))

    def nextId(self) -> int:
        return PAGE_DONE


class DonePage(QWizardPage):
    """Makes the wallet on the pool (scrypt) and saves the settings; Finish waits for it."""

    def __init__(self, wizard: FirstRunWizard) -> None:
        super().__init__()
        self.owner = wizard
        self.setTitle("Setting up")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        QVBoxLayout(self).addWidget(self.status)
        self.address = ""
        self.error = ""
        self.setFinalPage(True)

    def initializePage(self) -> None:
        self.address, self.error = "", ""
        self.status.setText("Encrypting your wallet (a few seconds)...")
        o = self.owner
        o.bridge.run_in_thread(
            create_wallet,
            o.data_dir,
            o.scrypt_n,
            o.mnemonic,
            o.password,
            o.chosen_settings(),
            done=self._made,
            failed=self._failed,
        )

    def _made(self, address: str) -> None:
        self.address = address
        self.status.setText(f"Your wallet is ready: {address}\nPress Finish to open MAGNET.")
        self.completeChanged.emit()

    def _failed(self, error: BaseException) -> None:
        self.error = in_words(error)
        self.status.setText(self.error + "\nGo Back to fix it.")

    def isComplete(self) -> bool:
        return bool(self.address)

    def nextId(self) -> int:
        return -1


class FirstRunWizard(QWizard):
    """On accept: ``address``, ``password`` (kept to start the node without asking again), settings saved."""

    def __init__(
        self,
        bridge: CoreBridge,
        data_dir: Path,
        settings: DesktopSettings,
        scrypt_n: int,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge, self.data_dir, self.settings, self.scrypt_n = bridge, data_dir, settings, scrypt_n
        self.mnemonic = ""
        self.setWindowTitle("MAGNET: first run")
        self.start, self.phrase, self.confirm = StartPage(), PhrasePage(self), ConfirmPage(self)
        self.restore, self.password_page, self.payout = ImportPage(self), PasswordPage(), PayoutPage()
        self.limits, self.network, self.done_page = LimitsPage(), NetworkPage(), DonePage(self)
        pages: list[tuple[int, QWizardPage]] = [
            (PAGE_START, self.start),
            (PAGE_PHRASE, self.phrase),
            (PAGE_CONFIRM, self.confirm),
            (PAGE_IMPORT, self.restore),
            (PAGE_PASSWORD, self.password_page),
            (PAGE_PAYOUT, self.payout),
            (PAGE_LIMITS, self.limits),
            (PAGE_NETWORK, self.network),
            (PAGE_DONE, self.done_page),
        ]
        for page_id, page in pages:
            self.setPage(page_id, page)
        self.setStartId(PAGE_START)

    @property
    def password(self) -> str:
        return self.password_page.password.text()

    @property
    def address(self) -> str:
        return self.done_page.address

    def chosen_settings(self) -> DesktopSettings:
        s = self.settings
        s.payout_address = self.payout.address.text().strip()
        s.max_threads, s.max_ram_mb = self.limits.threads.value(), self.limits.ram.value()
        s.pause_on_battery, s.idle_only = self.limits.battery.isChecked(), self.limits.idle.isChecked()
        s.network_mode = self.network.mode()
        s.network_file = "" if s.network_mode == NETWORK_DEVNET else self.network.file.text().strip()
        s.bootstrap_peers = (
            [p.strip() for p in self.network.peer_list.text().split(",") if p.strip()]
            if s.network_mode == NETWORK_PEERS
            else []
        )
        s.first_run_done = True
        return s


def create_wallet(
    data_dir: Path, scrypt_n: int, mnemonic: str, password: str, settings: DesktopSettings
) -> str:
    """On a pool thread: the keystore (scrypt), the payout choice, the settings file."""
    from wallet.walletdir import WalletDir

    wallet = WalletDir(data_dir / "wallet", scrypt_n=scrypt_n)
    address = wallet.import_mnemonic(mnemonic, password)
    if settings.payout_address:
        wallet.set_payout(settings.payout_address)
    settings.save(data_dir)
    return address


def make_phrase() -> str:
    from wallet.keys import new_mnemonic

    return new_mnemonic(12)
