"""Every reader of outside JSON survives a nesting bomb with a clear error (no SIGSEGV).

Importing eth_account raises the recursion limit to 100,000; after that, plain ``json.loads`` of
200,000 nested brackets overflows the C stack and kills the process. Each site below reads bytes
that come from a peer, a requester or an artifact, so each goes through ``protocol.strict_json``.
Each check runs in a child process, so a regression shows up as a crash of that child (exit -11),
not of the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BOMB = "b'[' * 200_000 + b']' * 200_000"

SITES = {
    "epoch file": f"""
        from wallet.epochs import EpochFileError, load_epoch_file
        from protocol.signing import Domain
        try:
            load_epoch_file({BOMB}, Domain(chain_id=1, verifying_contract="0x" + "11" * 20, salt=b"1" * 32))
        except EpochFileError as exc:
            print("refused:", exc)
    """,
    "JSON-RPC body": f"""
        from wallet.rpcserver import answer
        print("refused:", answer(None, {BOMB}))
    """,
    "safetensors header": f"""
        import struct, tempfile, pathlib
        from trainer.artifacts import safetensors_header
        from trainer.recipes import ArtifactRejected
        header = {BOMB}
        path = pathlib.Path(tempfile.mkdtemp()) / "adapter_model.safetensors"
        path.write_bytes(struct.pack("<Q", len(header)) + header)
        try:
            safetensors_header(path)
        except ArtifactRejected as exc:
            print("refused:", exc)
    """,
    "sandbox events": f"""
        from validator.sandbox import parse_events
        outcome = parse_events(({BOMB}).decode(), 1)
        print("refused:", outcome.error or outcome)
    """,
}


@pytest.mark.parametrize("site", sorted(SITES))
def test_a_nesting_bomb_is_refused_not_a_crash(site: str) -> None:
    prelude = "import eth_account, sys\nassert sys.getrecursionlimit() >= 100_000\n"
    code = prelude + textwrap.dedent(SITES[site])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{site}: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert "refused:" in done.stdout, done.stdout
