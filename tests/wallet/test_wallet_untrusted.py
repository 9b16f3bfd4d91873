"""Untrusted files and bytes only ever raise the module's own error, never anything else."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wallet_fixtures import make_domain, make_receipt

from wallet.epochs import EpochFile, EpochFileError, load_epoch_file
from wallet.errors import WalletError
from wallet.keystore import decrypt_private_key, encrypt_private_key, load_keystore
from wallet.receipts import sign_receipt
from wallet.signer import LocalSigner

KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
VALID = encrypt_private_key(KEY, "pw", scrypt_n=16)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def mutate(doc: dict, path: list, value: object) -> dict:  # type: ignore[type-arg]
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


FIELDS = [
    ["version"], ["crypto"], ["crypto", "cipher"], ["crypto", "ciphertext"], ["crypto", "mac"],
    ["crypto", "kdf"], ["crypto", "kdfparams"], ["crypto", "kdfparams", "n"], ["crypto", "kdfparams", "r"],
    ["crypto", "kdfparams", "p"], ["crypto", "kdfparams", "salt"], ["crypto", "kdfparams", "dklen"],
    ["crypto", "cipherparams"], ["crypto", "cipherparams", "iv"], ["address"],
]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values)
def test_a_mutated_keystore_raises_only_wallet_errors(path: list[str], value: object) -> None:
    try:
        decrypt_private_key(mutate(VALID, path, value), "pw")
    except WalletError:
        pass


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_keystore_files_raise_only_wallet_errors(tmp_path_factory, data: bytes) -> None:  # type: ignore[no-untyped-def]
    path: Path = tmp_path_factory.mktemp("ks") / "k.json"
    path.write_bytes(data)
    try:
        load_keystore(path)
    except WalletError:
        pass


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_random_epoch_files_raise_only_epoch_file_errors(data: bytes) -> None:
    try:
        load_epoch_file(data, make_domain())
    except EpochFileError:
        pass


def _valid_epoch_file() -> bytes:
    validator = LocalSigner.create()
    domain = make_domain()
    receipts = [
        sign_receipt(
            make_receipt(validator.address, LocalSigner.create().address, 5, nonce=i), domain, validator
        )
        for i in range(2)
    ]
    return EpochFile.build(0, validator.address, domain, receipts).to_bytes()


EPOCH_FILE = json.loads(_valid_epoch_file())
EPOCH_PATHS = [
    ["format"], ["version"], ["epoch"], ["validator"], ["domain"], ["root"], ["total"], ["receipts"],
    ["receipts", 0], ["receipts", 1, "body"], ["receipts", 0, "sig"], ["receipts", 0, "type"],
    ["receipts", 0, "body", "amount"], ["receipts", 1, "body", "epoch"], ["receipts", 0, "body", "validator"],
]  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(EPOCH_PATHS), json_values)
def test_a_mutated_epoch_file_raises_only_epoch_file_errors(path: list, value: object) -> None:  # type: ignore[type-arg]
    data = json.dumps(mutate(EPOCH_FILE, path, value), sort_keys=True, separators=(",", ":")).encode()
    try:
        load_epoch_file(data, make_domain())
    except EpochFileError:
        pass


def test_a_nesting_bomb_gets_a_clear_error_not_a_crash() -> None:
    """100,000 nested brackets (plain json.loads segfaults on these once eth_account has raised the
    recursion limit) are refused with an error that names the document, by the epoch-file loader
    and by the embedded chain's JSON-RPC server."""
    from typing import cast

    import eth_account  # noqa: F401  (the import that raises the recursion limit)

    from wallet.devchain import EmbeddedChain
    from wallet.rpcserver import answer

    bomb = b"[" * 100_000 + b"]" * 100_000
    try:
        load_epoch_file(bomb, make_domain())
    except EpochFileError as exc:
        assert "epoch file" in str(exc)
    else:
        raise AssertionError("a nesting bomb was accepted as an epoch file")
    reply = answer(cast(EmbeddedChain, None), bomb)  # refused before the chain is touched
    assert reply["error"]["code"] == -32700 and "not JSON" in reply["error"]["message"]
