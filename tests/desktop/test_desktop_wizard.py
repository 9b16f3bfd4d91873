"""The first-run wizard, walked as a person would: create (phrase shown, words confirmed) and import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from desktop_helpers import PASSWORD, PHRASE, PHRASE_ADDRESS

from desktop.bridge import CoreBridge
from desktop.settings import NETWORK_DEVNET, NETWORK_PROFILE, DesktopSettings
from desktop.wizard import PAGE_CONFIRM, PAGE_DONE, PAGE_IMPORT, PAGE_PHRASE, FirstRunWizard

pytestmark = pytest.mark.gui


def profile_file(tmp_path: Path) -> Path:
    from node.profile import NetworkProfile

    path = tmp_path / "network.json"
    NetworkProfile.new_devnet(
        chain_id=1337, rpc_url="http://127.0.0.1:8545", registry="0x" + "11" * 20, token="0x" + "22" * 20
    ).save(path)
    return path


def make_wizard(qtbot: Any, data_dir: Path) -> FirstRunWizard:
    wizard = FirstRunWizard(CoreBridge(), data_dir, DesktopSettings(), scrypt_n=1024)
    qtbot.addWidget(wizard)
    wizard.show()
    return wizard


def fill_password_payout_limits(wizard: FirstRunWizard, payout: str = "") -> None:
    wizard.password_page.password.setText(PASSWORD)
    assert not wizard.currentPage().isComplete()  # not confirmed yet
    wizard.password_page.again.setText(PASSWORD)
    assert wizard.currentPage().isComplete()
    wizard.next()
    wizard.payout.address.setText("0x1234")  # not an address: Next stays grey
    assert not wizard.payout.isComplete()
    wizard.payout.address.setText(payout)
    wizard.next()
    wizard.limits.threads.setValue(1)
    wizard.limits.ram.setValue(2048)
    wizard.next()


def finish(qtbot: Any, wizard: FirstRunWizard) -> None:
    assert wizard.currentId() == PAGE_DONE
    qtbot.waitUntil(wizard.done_page.isComplete, timeout=30_000)
    with qtbot.waitSignal(wizard.accepted, timeout=5_000):
        wizard.accept()


def test_create_a_wallet_shows_the_phrase_and_checks_words(
    qtbot: Any, data_dir: Path, tmp_path: Path
) -> None:
    wizard = make_wizard(qtbot, data_dir)
    wizard.next()
    assert wizard.currentId() == PAGE_PHRASE
    qtbot.waitUntil(lambda: bool(wizard.mnemonic), timeout=30_000)
    words = wizard.mnemonic.split()
    assert len(words) == 12 and words[0] in wizard.phrase.words.text()
    wizard.next()
    assert wizard.currentId() == PAGE_CONFIRM
    assert len(wizard.confirm.asked) == 3
    for _position, field in wizard.confirm.asked:
        field.setText("wrong")
    assert not wizard.confirm.isComplete()
    for position, field in wizard.confirm.asked:
        field.setText(words[position].upper())  # case does not matter
    assert wizard.confirm.isComplete()
    wizard.next()
    payout = "0x" + "ab" * 20
    fill_password_payout_limits(wizard, payout)
    wizard.network.file.setText(str(profile_file(tmp_path)))
    assert wizard.network.isComplete()
    wizard.next()
    finish(qtbot, wizard)

    from wallet.keys import account_from_mnemonic
    from wallet.walletdir import WalletDir

    assert wizard.address == account_from_mnemonic(wizard.mnemonic).address
    wallet = WalletDir(data_dir / "wallet")
    assert wallet.unlock(PASSWORD).address == wizard.address
    assert wallet.payout_address.lower() == payout
    saved = DesktopSettings.load(data_dir)
    assert saved.first_run_done and saved.network_mode == NETWORK_PROFILE
    assert saved.network_file.endswith("network.json") and saved.max_threads == 1 and saved.max_ram_mb == 2048


def test_import_a_wallet_from_its_phrase_with_a_local_devnet(qtbot: Any, data_dir: Path) -> None:
    wizard = make_wizard(qtbot, data_dir)
    wizard.start.restore.setChecked(True)
    wizard.next()
    assert wizard.currentId() == PAGE_IMPORT
    wizard.restore.phrase.setPlainText("abandon about")
    assert not wizard.restore.isComplete()
    wizard.restore.phrase.setPlainText("  " + PHRASE.upper().replace(" ", "\n") + " ")
    assert wizard.restore.isComplete()
    wizard.next()
    fill_password_payout_limits(wizard)
    assert not wizard.network.isComplete()  # a profile file is needed unless a devnet is chosen
    wizard.network.devnet.setChecked(True)
    assert wizard.network.isComplete()
    wizard.next()
    finish(qtbot, wizard)
    assert wizard.address == PHRASE_ADDRESS
    saved = DesktopSettings.load(data_dir)
    assert saved.network_mode == NETWORK_DEVNET and saved.payout_address == ""


def test_a_wrong_phrase_is_refused_in_words(qtbot: Any, data_dir: Path) -> None:
    wizard = make_wizard(qtbot, data_dir)
    wizard.start.restore.setChecked(True)
    wizard.next()
    wizard.restore.phrase.setPlainText(" ".join(["abandon"] * 12))  # bad checksum
    wizard.next()
    fill_password_payout_limits(wizard)
    wizard.network.devnet.setChecked(True)
    wizard.next()
    qtbot.waitUntil(lambda: bool(wizard.done_page.error), timeout=30_000)
    assert "recovery phrase" in wizard.done_page.error
    assert not wizard.done_page.isComplete()
    assert not (data_dir / "wallet" / "keystore.json").exists()
