from __future__ import annotations

import pytest

from wallet.errors import InvalidMnemonic, InvalidPrivateKey
from wallet.keys import (
    account_from_mnemonic,
    account_from_private_key,
    accounts_from_mnemonic,
    create_account,
    derivation_path,
    new_mnemonic,
)

# The public Hardhat/anvil development mnemonic and its published accounts: an independent
# BIP-39/BIP-44 test vector (never use it for real funds).
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ADDRESSES = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
]
DEV_KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def test_mnemonic_derives_the_published_accounts() -> None:
    accounts = accounts_from_mnemonic(DEV_MNEMONIC, 3)
    assert [a.address for a in accounts] == DEV_ADDRESSES
    assert accounts[0].key.hex() == DEV_KEY0.removeprefix("0x")


def test_pasted_mnemonic_with_stray_whitespace_and_case_is_accepted() -> None:
    messy = "  TEST test\ttest test test test test test test test test\n junk "
    assert account_from_mnemonic(messy, 1).address == DEV_ADDRESSES[1]


@pytest.mark.parametrize("words", [12, 24])
def test_new_mnemonic_has_the_asked_word_count_and_derives(words: int) -> None:
    account, mnemonic = create_account(words)
    assert len(mnemonic.split()) == words
    assert account_from_mnemonic(mnemonic).address == account.address
    assert new_mnemonic(words) != mnemonic


def test_bad_word_count_is_refused() -> None:
    with pytest.raises(InvalidMnemonic, match="12 or 24"):
        new_mnemonic(13)
    with pytest.raises(InvalidMnemonic, match="has 11"):
        account_from_mnemonic(" ".join(DEV_MNEMONIC.split()[:11]))


def test_bad_checksum_is_refused_without_quoting_the_phrase() -> None:
    wrong = DEV_MNEMONIC.replace("junk", "test")
    with pytest.raises(InvalidMnemonic) as info:
        account_from_mnemonic(wrong)
    assert "checksum" in str(info.value)
    assert "junk" not in str(info.value) and "test test" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_derivation_path() -> None:
    assert derivation_path(0) == "m/44'/60'/0'/0/0"
    assert derivation_path(7) == "m/44'/60'/0'/0/7"
    with pytest.raises(ValueError):
        derivation_path(-1)


@pytest.mark.parametrize("form", [DEV_KEY0, DEV_KEY0.removeprefix("0x"), bytes.fromhex(DEV_KEY0[2:])])
def test_private_key_import(form: str | bytes) -> None:
    assert account_from_private_key(form).address == DEV_ADDRESSES[0]


@pytest.mark.parametrize(
    "bad",
    ["0x1234", "zz" * 32, "0" * 64, "f" * 64, b"\x01" * 31],
)
def test_bad_private_key_is_refused(bad: str | bytes) -> None:
    with pytest.raises(InvalidPrivateKey):
        account_from_private_key(bad)
