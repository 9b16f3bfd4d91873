"""``magnet wallet ...`` and ``magnet validator ...`` end to end, against a served devnet chain."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wallet_fixtures import make_receipt

from node.cli import main
from node.cli.exitcodes import ExitCode
from node.profile import NetworkProfile
from protocol.encoding import encode
from protocol.errors import ProtocolError
from protocol.retired import ReceiptProofV1
from protocol.signing import sign
from wallet.devnet import DevnetChain, start_embedded_chain
from wallet.epochs import EpochFile
from wallet.keystore import write_json
from wallet.receiptbook import ReceiptBook
from wallet.receipts import sign_receipt
from wallet.registry import RegistryParams
from wallet.signer import LocalSigner

ETHER = 10**18
pytestmark = pytest.mark.network


@pytest.fixture
def home(magnet_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("MAGNET_WALLET__SCRYPT_N", "1024")
    monkeypatch.delenv("MAGNET_PASSWORD", raising=False)
    (tmp_path / "pw").write_text("correct horse\n")
    (tmp_path / "wrong").write_text("battery staple\n")
    for name in ("pw", "wrong"):
        (tmp_path / name).chmod(0o600)
    return magnet_home


@pytest.fixture(scope="module")
def devnet() -> Iterator[DevnetChain]:
    with start_embedded_chain([LocalSigner.create()], params=RegistryParams(epoch_length=3600)) as chain:
        yield chain


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_show_export_and_account_care(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pw, wrong = str(tmp_path / "pw"), str(tmp_path / "wrong")
    code, out, _ = run(capsys, "wallet", "create", "--password-file", pw)
    assert code == 0 and "wallet address: 0x" in out and "sealed" in out
    assert run(capsys, "wallet", "create", "--password-file", pw)[0] == ExitCode.WALLET_EXISTS
    code, out, _ = run(capsys, "wallet", "show", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["hot"] == shown["payout"] == shown["accounts"][0]["address"]
    code, _, err = run(capsys, "wallet", "add-account", "--password-file", wrong)
    assert code == ExitCode.WRONG_PASSWORD and "wrong password" in err
    code, out, _ = run(capsys, "wallet", "add-account", "--password-file", pw)
    second = out.split()[-1]
    assert code == 0 and second.startswith("0x")
    assert run(capsys, "wallet", "use", second)[0] == 0
    assert run(capsys, "wallet", "payout", "0x" + "5a" * 20)[0] == 0
    shown = json.loads(run(capsys, "wallet", "show", "--json")[1])
    assert shown["hot"] == second and shown["payout"].lower() == "0x" + "5a" * 20
    code, _, err = run(capsys, "wallet", "show", "--mnemonic", "--password-file", pw)
    assert code == ExitCode.USAGE and "terminal" in err  # never printed without a terminal
    assert run(capsys, "wallet", "export", "--out", str(tmp_path / "k.json"))[0] == 0
    assert json.loads((tmp_path / "k.json").read_text())["version"] == 3


def test_import_from_files_and_no_password_headless(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    phrase = tmp_path / "phrase"
    phrase.write_text("test test test test test test test test test test test junk\n")
    code, out, _ = run(capsys, "wallet", "import", "--mnemonic-file", str(phrase))
    assert code == ExitCode.NO_PASSWORD  # no terminal, no file, no MAGNET_PASSWORD
    code, out, _ = run(
        capsys, "wallet", "import", "--mnemonic-file", str(phrase), "--password-file", str(tmp_path / "pw")
    )
    assert code == 0 and "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in out


def test_headless_password_from_environment(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAGNET_PASSWORD", "from-env")
    assert run(capsys, "wallet", "create")[0] == 0
    assert run(capsys, "wallet", "add-account")[0] == 0
    monkeypatch.setenv("MAGNET_PASSWORD", "not-it")
    assert run(capsys, "wallet", "add-account")[0] == ExitCode.WRONG_PASSWORD


def test_chain_commands_without_a_profile_say_so(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    run(capsys, "wallet", "create", "--password-file", str(tmp_path / "pw"))
    code, _, err = run(capsys, "wallet", "balance")
    assert code == ExitCode.CONFIG and "--network FILE" in err


@pytest.mark.slow
def test_validator_stake_then_miner_receipts_and_claim(
    home: Path, tmp_path: Path, capsys, devnet: DevnetChain
) -> None:  # type: ignore[no-untyped-def]
    pw = str(tmp_path / "pw")
    profile = NetworkProfile.new_devnet(
        devnet.chain_id, devnet.rpc_url, devnet.deployment.registry, devnet.deployment.token
    )
    profile_file = tmp_path / "network.json"
    profile.save(profile_file)
    net = ("--network", str(profile_file), "--password-file", pw)
    run(capsys, "wallet", "create", "--password-file", pw)
    me = json.loads(run(capsys, "wallet", "show", "--json")[1])["hot"]

    code, _, err = run(capsys, "validator", "register", "--stake", "2", *net)
    assert code == ExitCode.ERROR and "fund the account" in err, err  # no gas yet
    devnet.fund(me, 10 * ETHER)
    assert run(capsys, "validator", "register", "--stake", "2", *net)[0] == 0
    code, _, err = run(capsys, "validator", "register", "--stake", "2", *net)
    assert code == ExitCode.ERROR and "AlreadyRegistered" in err
    assert run(capsys, "validator", "stake", "1.5", *net)[0] == 0
    code, out, _ = run(capsys, "validator", "unstake", "0.5", *net)
    assert code == 0 and "0.5 pending" in out
    code, out, _ = run(capsys, "validator", "status", *net)
    assert "registered, stake 3," in out

    # This node is also a miner here: another validator pays it for one task.
    validator = LocalSigner.create()
    devnet.fund(validator.address, 20 * ETHER)
    devnet.registry(validator).register(ETHER)
    domain = profile.domain()
    start_epoch = devnet.registry().current_epoch()
    receipt, second = (
        sign_receipt(
            make_receipt(validator.address, me, 1000 * ETHER, epoch=start_epoch, nonce=n), domain, validator
        )
        for n in (0, 1)
    )
    book = ReceiptBook(home / "receipts", domain)
    book.add_receipt(receipt)
    book.add_receipt(second)
    built = EpochFile.build(start_epoch, validator.address, domain, [receipt, second])
    devnet.advance_to_epoch(start_epoch + 1)
    devnet.registry(validator).post_epoch(start_epoch, built.root, built.file_hash, built.total)
    proof = built.proof_for(receipt.message, issued_at=1)  # type: ignore[arg-type]

    # A v1 proof (no leaf index) kept from before the upgrade: listed, and claiming says what to do.
    fields = ("epoch", "validator", "receipt_hash", "payout", "amount", "proof", "root", "issued_at")
    old = sign(ReceiptProofV1(**{f: getattr(proof, f) for f in fields}), domain, validator)
    with pytest.raises(ProtocolError, match="ask the validator for a new proof"):
        book.add_proof(old)
    stored = home / "receipts" / str(start_epoch) / f"{proof.receipt_hash.hex()}.json"
    write_json(stored, {"receipt": json.loads(encode(receipt)), "proof": json.loads(encode(old))})
    code, out, _ = run(capsys, "wallet", "receipts", *net)
    assert code == 0 and "v1 proof: ask the validator for a new one" in out
    code, out, err = run(capsys, "wallet", "claim", *net)
    assert code == ExitCode.ERROR and "ask the validator for a new proof" in err and "1 refused" in out

    book.add_proof(sign(proof, domain, validator))  # the new proof replaces it
    book.add_proof(sign(built.proof_for(second.message, issued_at=1), domain, validator))  # type: ignore[arg-type]

    code, out, _ = run(capsys, "wallet", "receipts", "--json", *net)
    docs = json.loads(out)
    assert code == 0 and len(docs) == 2
    assert all(doc["signer"] == validator.address and doc["proof"] is not None for doc in docs)
    code, out, err = run(capsys, "wallet", "claim", *net)
    assert code == ExitCode.ERROR and "ClaimNotOpen" in err  # the posting window is still open
    devnet.advance_to_epoch(start_epoch + 2)
    code, out, _ = run(capsys, "wallet", "claim", "--dry-run", *net)
    assert code == 0 and "proof checks out" in out and "2 checked" in out
    code, out, _ = run(capsys, "wallet", "claim", *net)
    assert code == 0 and "2 claimed" in out
    assert len(set(re.findall(r"in block (\d+)", out))) == 1  # both leaves: one claimMany transaction
    code, out, _ = run(capsys, "wallet", "balance", "--json", *net)
    balances = {row["role"]: row for row in json.loads(out)}
    assert balances["payout"]["mag_wei"] == str(1000 * ETHER)  # the emission, half per leaf
    code, out, _ = run(capsys, "wallet", "claim", *net)
    assert code == 0 and "0 claimed" in out and "2 skipped" in out  # already claimed: nothing sent


def test_status_has_a_wallet_section(home: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "status", "--json")
    assert code == 0 and json.loads(out)["wallet"]["wallet"].startswith("none")
    run(capsys, "wallet", "create", "--password-file", str(tmp_path / "pw"))
    code, out, _ = run(capsys, "status", "--json")
    section = json.loads(out)["wallet"]
    assert code == 0 and section["accounts"] == 1 and section["hot"] == section["payout"]
    assert section["recovery_phrase"] == "sealed" and section["receipts"] == 0


@pytest.mark.slow
def test_recovery_phrase_is_shown_on_a_terminal_after_the_password(
    home: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    phrase = "test test test test test test test test test test test junk"
    (tmp_path / "phrase").write_text(phrase + "\n")
    pw = str(tmp_path / "pw")
    run(capsys, "wallet", "import", "--mnemonic-file", str(tmp_path / "phrase"), "--password-file", pw)
    master, slave = pty.openpty()
    try:
        argv = [sys.executable, "-m", "node.cli", "wallet", "show", "--mnemonic", "--password-file"]
        shown = subprocess.run(
            [*argv, pw], stdin=slave, capture_output=True, text=True, timeout=60, check=False
        )
        wrong = subprocess.run(
            [*argv, str(tmp_path / "wrong")],
            stdin=slave,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert shown.returncode == 0 and phrase in shown.stdout, shown.stderr
    assert wrong.returncode == ExitCode.WRONG_PASSWORD and phrase not in wrong.stdout + wrong.stderr


def test_validator_actions_hang_under_the_validator_command() -> None:
    import importlib.util

    from node.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["validator", "stake", "1"]).handler.__name__ == "cmd_stake"
    if importlib.util.find_spec("validator.cli") is None:
        pytest.skip("validator/cli.py is absent: `magnet validator` is then only the chain actions")
    alone = parser.parse_args(["validator"]).handler
    # With validator/cli.py present, `magnet validator` alone still runs the validator.
    assert alone.__module__ != "wallet.cli_validator"
