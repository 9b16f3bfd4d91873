"""Compile the Solidity sources in /contracts with solc-js (npm ``solc``) and write the artifacts.

Run ``python -m wallet.contracts.build`` (``make contracts``); ``--check`` compiles and compares
with the committed JSON instead of writing (exit 1 on a difference). Imports are resolved here
(``./X.sol`` beside the source, ``@openzeppelin/...`` in node_modules) and handed to solc as one
standard-JSON input, so the output depends only on the sources and the pinned compiler.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from wallet.contracts import ARTIFACT_DIR, CONTRACT_NAMES, SOURCE_UNITS

REPO = ARTIFACT_DIR.parent.parent
SOURCE_DIR = REPO / "contracts"
NODE_MODULES = REPO / "node_modules"
EVM_VERSION = "cancun"
_IMPORT = re.compile(r'^\s*import\s+(?:\{[^}]*\}\s+from\s+)?"([^"]+)"\s*;', re.MULTILINE)


class BuildError(RuntimeError):
    """The compiler is missing or the sources do not compile."""


def collect_sources() -> dict[str, dict[str, str]]:
    """Every source unit reachable from contracts/*.sol, keyed by its solc unit name."""
    sources: dict[str, dict[str, str]] = {}
    todo = [str(p.relative_to(REPO)) for p in sorted(SOURCE_DIR.glob("**/*.sol"))]
    while todo:
        unit = todo.pop()
        if unit in sources:
            continue
        text = _unit_path(unit).read_text(encoding="utf-8")
        sources[unit] = {"content": text}
        for target in _IMPORT.findall(text):
            todo.append(_resolve(unit, target))
    return dict(sorted(sources.items()))


def _unit_path(unit: str) -> Path:
    return NODE_MODULES / unit if unit.startswith("@") else REPO / unit


def _resolve(unit: str, target: str) -> str:
    if not target.startswith("."):
        return target
    parts = unit.split("/")[:-1]
    for piece in target.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def standard_input() -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": collect_sources(),
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "viaIR": True,
            "evmVersion": EVM_VERSION,
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }


def solcjs() -> list[str]:
    local = NODE_MODULES / ".bin" / "solcjs"
    if local.exists() and shutil.which("node"):
        return [str(local)]
    raise BuildError("solc-js is not installed: run `make node-deps` (needs node and npm)")


def compile_contracts() -> dict[str, dict[str, Any]]:
    """Compile and return ``{name: {"abi", "bytecode", "compiler", "evmVersion"}}``."""
    # solcjs reads stdin with readFileSync, which fails with EAGAIN on a pipe: hand it a file.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdin:
        json.dump(standard_input(), stdin)
        stdin.seek(0)
        proc = subprocess.run(
            [*solcjs(), "--standard-json"],
            stdin=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    # solcjs prints a stray line before the JSON on stdout.
    start = proc.stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise BuildError(f"solcjs failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout[:500]}")
    output = json.loads(proc.stdout[start:])
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("solidity errors:\n" + "\n".join(errors))
    version = _compiler_version()
    artifacts = {}
    for name in CONTRACT_NAMES:
        out = output["contracts"][SOURCE_UNITS[name]][name]
        artifacts[name] = {
            "contractName": name,
            "abi": out["abi"],
            "bytecode": "0x" + out["evm"]["bytecode"]["object"],
            "compiler": version,
            "evmVersion": EVM_VERSION,
        }
    return artifacts


def _compiler_version() -> str:
    package = json.loads((NODE_MODULES / "solc" / "package.json").read_text(encoding="utf-8"))
    return f"solc-js {package['version']}"


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed artifacts")
    args = parser.parse_args(argv)
    try:
        artifacts = compile_contracts()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    for name, artifact in artifacts.items():
        path = ARTIFACT_DIR / f"{name}.json"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != render(artifact):
                stale.append(name)
        else:
            path.write_text(render(artifact), encoding="utf-8")
            print(f"wrote {path.relative_to(REPO)} ({len(artifact['bytecode']) // 2 - 1} bytes of bytecode)")
    if stale:
        print(f"stale artifacts: {', '.join(stale)}: run `make contracts`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
