"""An artifact's JSON (adapter_config.json, safetensors header) is untrusted: a nesting bomb is refused
with ArtifactRejected, not a RecursionError or a segfault (plain json.loads segfaults on it once
eth_account has raised the recursion limit, which every validator process does)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

CHECK = """
    import eth_account, struct, sys
    from pathlib import Path
    assert sys.getrecursionlimit() >= 100_000
    from trainer.artifacts import read_adapter_config, safetensors_header
    from trainer.recipes.base import ArtifactRejected
    bomb = b"[" * 200_000 + b"]" * 200_000
    art = Path(sys.argv[1])
    (art / "adapter_config.json").write_bytes(bomb)
    (art / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(bomb)) + bomb)
    for name, read in (("config", lambda: read_adapter_config(art)),
                       ("header", lambda: safetensors_header(art / "adapter_model.safetensors"))):
        try:
            read()
        except ArtifactRejected as exc:
            print(name, "refused:", exc)
"""


def test_a_deeply_nested_artifact_json_is_refused_clearly(tmp_path: Path) -> None:
    code = textwrap.dedent(CHECK)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stderr[-2000:]}"
    lines = done.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["config", "header"], done.stdout
    for line in lines:
        assert "refused:" in line and "nest" in line.lower(), line
