from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from wallet.errors import InvalidMnemonic, WalletError, WrongPassword
from wallet.keystore import load_keystore, save_keystore, seal_secret, write_json
from wallet.walletdir import NoWallet, WalletDir, WalletExists

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV = ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]


@pytest.fixture
def wallet(tmp_path: Path, cheap_n: int) -> WalletDir:
    return WalletDir(tmp_path / "wallet", scrypt_n=cheap_n)


def test_create_then_unlock_and_reveal(wallet: WalletDir) -> None:
    address, mnemonic = wallet.create("pw", words=24)
    assert len(mnemonic.split()) == 24
    assert wallet.unlock("pw").address == address == wallet.hot_address == wallet.payout_address
    assert wallet.reveal_mnemonic("pw") == mnemonic
    with pytest.raises(WrongPassword, match="wrong password"):
        wallet.reveal_mnemonic("nope")
    with pytest.raises(WrongPassword, match="wrong password"):
        wallet.unlock("nope")
    for path in wallet.root.rglob("*.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert mnemonic.split()[0] + " " + mnemonic.split()[1] not in path.read_text()
    assert stat.S_IMODE(wallet.root.stat().st_mode) == 0o700


def test_import_mnemonic_with_several_accounts_and_add_one(wallet: WalletDir) -> None:
    assert wallet.import_mnemonic("  " + DEV_MNEMONIC.upper(), "pw", accounts=2) == DEV[0]
    assert [a.address for a in wallet.accounts()] == DEV
    assert wallet.unlock("pw", DEV[1]).address == DEV[1]
    third = wallet.add_account("pw")
    assert third == "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
    assert [a.path for a in wallet.accounts()][-1] == "m/44'/60'/0'/0/2"


def test_refuses_to_overwrite_and_bad_phrase(wallet: WalletDir) -> None:
    with pytest.raises(InvalidMnemonic):
        wallet.import_mnemonic(DEV_MNEMONIC.replace("junk", "test"), "pw")
    assert not wallet.exists()
    wallet.import_mnemonic(DEV_MNEMONIC, "pw")
    with pytest.raises(WalletExists):
        wallet.create("pw")
    with pytest.raises(WalletExists):
        wallet.import_private_key("0x" + "11" * 32, "pw")


def test_private_key_wallet_has_no_mnemonic(wallet: WalletDir) -> None:
    key = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
    assert wallet.import_private_key(key, "pw") == DEV[0]
    with pytest.raises(NoWallet, match="no recovery phrase"):
        wallet.reveal_mnemonic("pw")


def test_change_password_rewrites_everything_and_wrong_old_changes_nothing(wallet: WalletDir) -> None:
    wallet.import_mnemonic(DEV_MNEMONIC, "old", accounts=2)
    before = {p: p.read_bytes() for p in wallet.root.rglob("*.json")}
    with pytest.raises(WrongPassword):
        wallet.change_password("wrong", "new")
    assert before == {p: p.read_bytes() for p in wallet.root.rglob("*.json")}
    wallet.change_password("old", "new")
    assert wallet.unlock("new", DEV[1]).address == DEV[1]
    assert wallet.reveal_mnemonic("new") == DEV_MNEMONIC
    with pytest.raises(WrongPassword):
        wallet.unlock("old")


def test_hot_and_payout(wallet: WalletDir) -> None:
    wallet.import_mnemonic(DEV_MNEMONIC, "pw", accounts=2)
    wallet.set_hot(DEV[1])
    assert wallet.hot_address == DEV[1]
    assert wallet.unlock("pw").address == DEV[1]  # keystore.json now holds account 1
    assert load_keystore(wallet.hot_keystore)["address"].lower() == DEV[1][2:].lower()
    assert wallet.unlock("pw", DEV[0]).address == DEV[0]
    assert wallet.payout_address == DEV[0]
    cold = "0x" + "5a" * 20
    wallet.set_payout(cold)
    assert wallet.payout_address.lower() == cold
    with pytest.raises(WalletError, match="not an EVM address"):
        wallet.set_payout("0x1234")
    with pytest.raises(WalletError, match="not an account of this wallet"):
        wallet.unlock("pw", cold)


def test_export_keystore_is_the_encrypted_file(wallet: WalletDir, tmp_path: Path) -> None:
    wallet.create("pw")
    out = wallet.export_keystore(tmp_path / "export" / "key.json")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert bytes(Account.decrypt(json.loads(out.read_text()), "pw")) == bytes(
        wallet.unlock("pw").export_private_key()
    )
    with pytest.raises(WalletExists):
        wallet.export_keystore(out)


def test_wallet_made_by_magnet_init_is_understood(tmp_path: Path, cheap_n: int) -> None:
    root = tmp_path / "wallet"
    account = Account.from_mnemonic(DEV_MNEMONIC)
    save_keystore(root / "keystore.json", bytes(account.key), "pw", cheap_n)
    write_json(root / "mnemonic.json", seal_secret(DEV_MNEMONIC.encode(), "pw", cheap_n))
    wallet = WalletDir(root, cheap_n)
    [info] = wallet.accounts()
    assert (info.address, info.path, info.hot) == (DEV[0], "m/44'/60'/0'/0/0", True)
    assert wallet.add_account("pw") == DEV[1]


def test_no_wallet_says_how_to_make_one(wallet: WalletDir) -> None:
    with pytest.raises(NoWallet, match="magnet wallet create"):
        wallet.accounts()


def test_interrupted_password_change_is_finished_or_discarded(
    wallet: WalletDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    wallet.import_mnemonic(DEV_MNEMONIC, "old", accounts=2)
    real_recover = wallet.recover
    monkeypatch.setattr(wallet, "recover", lambda: None)  # "crash" after the marker, before the moves
    wallet.change_password("old", "new")
    assert wallet.commit_marker.exists() and list(wallet.root.rglob("*.pending"))
    monkeypatch.setattr(wallet, "recover", real_recover)
    assert wallet.unlock("new", DEV[1]).address == DEV[1]  # committed: finished on next use
    assert wallet.reveal_mnemonic("new") == DEV_MNEMONIC
    assert not list(wallet.root.rglob("*.pending")) and not wallet.commit_marker.exists()

    # A crash before the marker: the half-written change is discarded, the old password stays.
    (wallet.root / "keystore.json.pending").write_text("{}")
    wallet.recover()
    assert not list(wallet.root.rglob("*.pending"))
    assert wallet.unlock("new").address == DEV[0]
