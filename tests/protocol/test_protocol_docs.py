"""docs/PROTOCOL.md stays in step with the registry; decoding needs no import beyond protocol.encoding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from protocol.docs import render

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_MD = REPO / "docs" / "PROTOCOL.md"


def test_message_reference_in_protocol_md_is_up_to_date() -> None:
    current = PROTOCOL_MD.read_text()
    assert render(current) == current, "run: .venv/bin/python -m protocol.docs docs/PROTOCOL.md"


def test_protocol_md_keeps_the_stream_protocols_section_for_p2p() -> None:
    assert "\n## Stream protocols\n" in PROTOCOL_MD.read_text()


def test_decoding_in_a_fresh_process_that_imports_only_the_encoding_module() -> None:
    vector = json.loads((Path(__file__).parent / "vectors" / "v1.json").read_text())["vectors"][0]
    code = (
        "import sys; from protocol.encoding import decode; "
        "print(decode(sys.stdin.buffer.read()).message.TYPE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=vector["encoded"].encode(),
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == vector["type"]
