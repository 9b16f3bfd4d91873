"""``magnet wallet ...``: create, import, show, export, balance, receipts, claim (and account care).

Secrets never come from the command line (it is visible to other users in ``ps``): passwords come
from ``--password-file``, ``MAGNET_PASSWORD``, a secure keyring or a prompt; a mnemonic or key to
import from a file or a hidden prompt. The recovery phrase is printed only on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from node.cli.common import Subparsers, config_from_args, data_dir_of, has_terminal, out
from node.cli.exitcodes import CliError, ExitCode
from wallet.cli_common import add_options, load, password

if TYPE_CHECKING:
    from protocol.messages import ReceiptProof
    from protocol.retired import ReceiptProofV1
    from wallet.registry import Registry
    from wallet.rewards import ClaimOutcome

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Subparsers) -> None:
    if "wallet" in subparsers.choices:
        return
    wallet = subparsers.add_parser(
        "wallet",
        help="keys, receipts and rewards",
        description="Manage the wallet: keys (keystore v3 files under your password), receipts and rewards.",
    )
    actions = wallet.add_subparsers(
        dest="wallet_action", metavar="ACTION", required=True, parser_class=type(wallet)
    )

    def action(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text)
        add_options(parser)
        parser.set_defaults(handler=handler)
        return parser

    create = action("create", cmd_create, "create a new wallet with a BIP-39 recovery phrase")
    create.add_argument("--words", type=int, choices=(12, 24), default=12, help="phrase length (default 12)")
    imp = action("import", cmd_import, "restore a wallet from a recovery phrase or a private key")
    source = imp.add_mutually_exclusive_group()
    source.add_argument("--mnemonic-file", metavar="FILE", help="file holding the recovery phrase")
    source.add_argument("--private-key-file", metavar="FILE", help="file holding a hex private key")
    imp.add_argument("--accounts", type=int, default=1, help="accounts to derive from the phrase (default 1)")
    show = action("show", cmd_show, "list accounts, the signing (hot) account and the payout address")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--mnemonic", action="store_true", help="also reveal the recovery phrase (password)")
    export = action("export", cmd_export, "copy an account's keystore v3 file (still encrypted)")
    export.add_argument("--out", required=True, metavar="FILE", help="where to write the keystore")
    export.add_argument("--address", help="account to export (default: the hot account)")
    action("add-account", cmd_add_account, "derive the next account from the recovery phrase")
    passwd = action("passwd", cmd_passwd, "change the wallet password")
    passwd.add_argument("--new-password-file", metavar="FILE", help="read the new password from FILE")
    payout = action("payout", cmd_payout, "pay rewards to ADDRESS (any address)")
    payout.add_argument("address")
    use = action("use", cmd_use, "sign with ADDRESS (an account of this wallet)")
    use.add_argument("address")
    balance = action("balance", cmd_balance, "native and MAG balances of the hot and payout addresses")
    balance.add_argument("--json", action="store_true", help="machine-readable output")
    receipts = action("receipts", cmd_receipts, "receipts received, their proofs and claim status")
    receipts.add_argument("--json", action="store_true", help="eth_signTypedData_v4 JSON with signatures")
    claim = action(
        "claim", cmd_claim, "claim every proven, unclaimed receipt: one transaction per validator and epoch"
    )
    claim.add_argument("--epoch", type=int, help="only this epoch")
    claim.add_argument("--dry-run", action="store_true", help="check the proofs, send nothing")


# --- keys --------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    with data_dir_of(config):
        if wallet.exists():
            raise CliError(
                ExitCode.WALLET_EXISTS, f"a wallet already exists in {wallet.root}; nothing was changed"
            )
        secret = password(config, "protect the new wallet", confirm=True)
        address, mnemonic = wallet.create(secret, words=args.words)
    out(f"wallet address: {address}")
    out(f"keystore: {wallet.hot_keystore}")
    if has_terminal() and not config.node.password_file:
        _print_phrase(mnemonic)
    else:
        out(
            f"recovery phrase: sealed in {wallet.mnemonic_file}; "
            "`magnet wallet show --mnemonic` on a terminal shows it"
        )
    return int(ExitCode.OK)


def cmd_import(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    with data_dir_of(config):
        if wallet.exists():
            raise CliError(
                ExitCode.WALLET_EXISTS, f"a wallet already exists in {wallet.root}; nothing was changed"
            )
        if args.private_key_file:
            key = _read_secret_file(args.private_key_file)
            address = wallet.import_private_key(key, password(config, "protect the wallet", confirm=True))
        else:
            phrase = _read_secret_file(args.mnemonic_file) if args.mnemonic_file else _ask_phrase()
            from wallet.keys import account_from_mnemonic

            account_from_mnemonic(phrase)  # check the phrase before asking for a password
            secret = password(config, "protect the wallet", confirm=True)
            address = wallet.import_mnemonic(phrase, secret, accounts=args.accounts)
    out(f"wallet address: {address}")
    return int(ExitCode.OK)


def cmd_show(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    accounts = wallet.accounts()
    phrase = None
    if args.mnemonic:
        if not has_terminal():
            raise CliError(ExitCode.USAGE, "the recovery phrase is printed on a terminal only")
        phrase = wallet.reveal_mnemonic(password(config, "reveal the recovery phrase"))
    if args.json:
        doc = {
            "accounts": [{"address": a.address, "path": a.path, "hot": a.hot} for a in accounts],
            "hot": wallet.hot_address,
            "payout": wallet.payout_address,
            "keystore": str(wallet.hot_keystore),
        }
        print(json.dumps(doc, indent=2))
    else:
        for a in accounts:
            out(f"{'*' if a.hot else ' '} {a.address}  {a.path or 'imported key'}")
        out(f"payout: {wallet.payout_address}")
    if phrase is not None:
        _print_phrase(phrase)
    return int(ExitCode.OK)


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    _, wallet = load(args)
    path = wallet.export_keystore(Path(args.out).expanduser(), args.address)
    out(f"keystore written to {path} (encrypted with the wallet password)")
    return int(ExitCode.OK)


def cmd_add_account(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    with data_dir_of(config):
        address = wallet.add_account(password(config, "derive a new account"))
    out(f"new account: {address}")
    return int(ExitCode.OK)


def cmd_passwd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wallet.password import forget_password, get_password

    config, wallet = load(args)
    with data_dir_of(config):
        old = password(config, "unlock the wallet (current password)")
        source = Path(args.new_password_file) if args.new_password_file else None
        new = get_password("protect the wallet (new password)", password_file=source, env={}, confirm=True)
        wallet.change_password(old, new)
        for account in wallet.accounts():
            forget_password(account.address)
    out("password changed for every account and the recovery phrase")
    return int(ExitCode.OK)


def cmd_payout(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    with data_dir_of(config):
        wallet.set_payout(args.address)
    out(f"rewards will be paid to {wallet.payout_address}")
    return int(ExitCode.OK)


def cmd_use(args: argparse.Namespace) -> int:
    config, wallet = load(args)
    with data_dir_of(config):
        wallet.set_hot(args.address)
    out(f"signing with {wallet.hot_address}")
    return int(ExitCode.OK)


# --- chain -------------------------------------------------------------------------------


def cmd_balance(args: argparse.Namespace) -> int:
    from wallet.cli_common import chain_client, chain_errors, format_units, network
    from wallet.registry import Registry

    config, wallet = load(args)
    profile = network(config)
    registry = Registry(chain_client(config, profile), profile.registry)
    rows = []
    with chain_errors():
        for role, address in (("hot", wallet.hot_address), ("payout", wallet.payout_address)):
            rows.append((role, address, registry.client.balance(address), registry.token_balance(address)))
    if args.json:
        doc = [{"role": r, "address": a, "native_wei": str(n), "mag_wei": str(t)} for r, a, n, t in rows]
        print(json.dumps(doc, indent=2))
    else:
        for role, address, native, token in rows:
            out(f"{role:6} {address}  {format_units(native)} native  {format_units(token)} MAG")
    return int(ExitCode.OK)


def cmd_receipts(args: argparse.Namespace) -> int:
    from wallet.cli_common import format_units, network
    from wallet.receiptbook import ReceiptBook, all_entries
    from wallet.receipts import export_receipt

    config = config_from_args(args)
    profile = network(config)
    data_dir = data_dir_of(config)
    entries = all_entries(ReceiptBook(data_dir.root / "receipts", profile.domain()), data_dir.store)
    if args.json:
        docs = []
        for entry in entries:
            doc = export_receipt(entry.receipt, profile.domain())
            proof = entry.proof_body
            doc["proof"] = None if proof is None else ["0x" + p.hex() for p in proof.proof]
            doc["leafIndex"] = getattr(proof, "index", None)  # None: no proof, or a v1 proof (no index)
            docs.append(doc)
        print(json.dumps(docs, indent=2))
        return int(ExitCode.OK)
    if not entries:
        out("no receipts yet")
    for entry in entries:
        r = entry.body
        status = "proof" if entry.proof is not None else "awaiting proof"
        if entry.proof is not None and entry.proof.message.VERSION < 2:
            status = "v1 proof: ask the validator for a new one"
        out(
            f"epoch {r.epoch}  rank {r.rank}/{r.pool_size}  {format_units(r.amount)} MAG  "
            f"{r.validator}  {status}"
        )
    return int(ExitCode.OK)


def cmd_claim(args: argparse.Namespace) -> int:
    from wallet.cli_common import chain_client, chain_errors, network, unlock
    from wallet.receiptbook import ReceiptBook, all_entries
    from wallet.registry import Registry

    config, wallet = load(args)
    profile = network(config)
    data_dir = data_dir_of(config)
    entries = all_entries(ReceiptBook(data_dir.root / "receipts", profile.domain()), data_dir.store)
    proven = [e for e in entries if e.proof_body and (args.epoch is None or e.body.epoch == args.epoch)]
    signer = None if args.dry_run else unlock(config, wallet)
    registry = Registry(chain_client(config, profile, signer), profile.registry)
    counts = {"claimed": 0, "refused": 0, "skipped": 0, "checked": 0}
    proofs = [e.proof_body for e in proven if e.proof_body is not None]
    if args.dry_run:
        results = []
        for proof in proofs:
            with chain_errors():
                results.append((proof, *_check_one(registry, proof)))
    else:
        from wallet.rewards import claim_proofs

        with chain_errors():  # several proofs of one post go in one claimMany transaction
            results = [(o.proof, o.status, _claimed_message(o)) for o in claim_proofs(registry, proofs)]
    for proof, status, message in results:
        counts[status] += 1
        if message:
            out(f"epoch {proof.epoch}: {message}", sys.stderr if status == "refused" else sys.stdout)
    out(", ".join(f"{n} {status}" for status, n in counts.items()))
    return int(ExitCode.OK if counts["refused"] == 0 else ExitCode.ERROR)


def _check_one(registry: Registry, proof: ReceiptProof | ReceiptProofV1) -> tuple[str, str]:
    """(status, message) of a dry run: checked (the proof leads to the root on chain) or refused."""
    from wallet.cli_common import format_units
    from wallet.epochs import EpochFileError, check_proof

    try:
        post = registry.post(proof.epoch, proof.validator)
        check_proof(proof, None if post is None else post.root)
    except EpochFileError as exc:
        return "refused", str(exc)
    return "checked", f"proof checks out for {format_units(proof.amount)} (not sent)"


def _claimed_message(outcome: ClaimOutcome) -> str:
    if outcome.status == "claimed" and outcome.result is not None:
        return f"claimed for {outcome.proof.payout} in block {outcome.result.block_number}"
    return outcome.message


# --- helpers -----------------------------------------------------------------------------


def _read_secret_file(path: str) -> str:
    from pathlib import Path

    from wallet.password import read_password_file

    return read_password_file(Path(path))  # first line, size-capped, registered with the redactor


def _ask_phrase() -> str:
    import getpass

    from node.logs import register_secret

    if not has_terminal():
        raise CliError(ExitCode.USAGE, "no terminal to type the phrase on: pass --mnemonic-file FILE")
    phrase = getpass.getpass("Recovery phrase (hidden): ")
    register_secret(phrase)
    return phrase


def _print_phrase(mnemonic: str) -> None:
    """On the terminal only, never through logging (which would redact it anyway)."""
    print("\nWrite these words down and keep them offline: they are the only way to recover the wallet.")
    print("  " + mnemonic + "\n", flush=True)
