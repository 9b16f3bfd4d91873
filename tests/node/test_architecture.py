"""The import rules of docs/ARCHITECTURE.md, checked on the source of every package (with ast).

Imports under ``if TYPE_CHECKING:`` are ignored (they never run). For the wiring modules
(``node/core.py``, ``node/cli/``), imports of other components must be lazy (inside a function).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "node", "wallet", "p2p", "trainer", "miner", "validator", "devnet", "desktop")
NODE_BASE = (
    "node.config", "node.events", "node.store", "node.paths", "node.logs", "node.profile", "node.service",
    "node.child",
)
COMPONENTS = ("wallet", "p2p", "trainer", "miner", "validator", "devnet", "desktop")
GUI_LIBRARIES = ("PySide6", "shiboken6", "pyqtgraph")
TRAINER_MAY_USE = ("protocol.bundle", "protocol.bundle_manifest", "protocol.safetensors_header",
                   "protocol.errors", "protocol.strict_json")


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module (or module.name for `from module import name`), dotted
    line: int
    lazy: bool  # inside a function


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    tree = ast.parse(source)
    yield from _walk(tree, module, is_package, lazy=False)


def _walk(node: ast.AST, module: str, is_package: bool, lazy: bool) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _walk(stmt, module, is_package, lazy)
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield Import(module, alias.name, child.lineno, lazy)
        elif isinstance(child, ast.ImportFrom):
            base = _resolve(child, module, is_package)
            yield Import(module, base, child.lineno, lazy)
            for alias in child.names:
                yield Import(module, f"{base}.{alias.name}", child.lineno, lazy)
        inner_lazy = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, module, is_package, inner_lazy)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = parts[:keep]
    return ".".join([*base, node.module] if node.module else base)


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def is_pure_config(name: str) -> bool:
    return under(name, *(f"{pkg}.config" for pkg in PACKAGES))


def is_cli_front_end(module: str) -> bool:
    """A package's command module (``wallet.cli``, ``wallet.cli_validator``...): part of the wiring."""
    parts = module.split(".")
    return len(parts) >= 2 and parts[0] in COMPONENTS and (parts[1] == "cli" or parts[1].startswith("cli_"))


def violations(imp: Import) -> list[str]:
    """Every rule ``imp`` breaks, in words."""
    src, dst = imp.source, imp.target
    ours = under(dst, *PACKAGES)
    problems = []
    if is_cli_front_end(src) and ours:
        own = src.split(".")[0]
        if under(dst, "desktop"):
            return ["nothing outside desktop/ imports desktop (the CLI launches it by name)"]
        if under(dst, own, "protocol", *NODE_BASE, "node.cli.common", "node.cli.exitcodes") or dst == "node":
            return []
        if not imp.lazy:
            return ["command modules import the core and other components lazily, inside handlers"]
        return []
    if under(dst, *GUI_LIBRARIES) and not under(src, "desktop"):
        problems.append("only desktop/ may import Qt")
    if not ours:
        return problems
    if under(dst, "desktop") and not under(src, "desktop"):
        problems.append("nothing outside desktop/ imports desktop (the CLI launches it by name)")
    if under(dst, "devnet") and not under(src, "devnet", "node.cli", "desktop"):
        problems.append("only the CLI and the desktop start a devnet (devnet/ assembles every role)")
    own = src.split(".")[0]
    if src == f"{own}.config" and own != "node":  # node.config gathers the sections: a node base module
        problems.append("config sections are pure dataclasses: they import nothing of ours")
    elif under(src, "protocol") and not under(dst, "protocol"):
        problems.append("protocol/ imports nothing of ours")
    elif under(src, *NODE_BASE, "node") and src in (*NODE_BASE, "node"):
        if not (under(dst, "protocol", *NODE_BASE) or is_pure_config(dst) or dst == "node"):
            problems.append("node base modules import only protocol, node base modules and */config.py")
    elif under(src, "node.core", "node.cli"):
        if under(dst, *COMPONENTS) and not imp.lazy:
            problems.append("the wiring (node/core.py, node/cli) imports components lazily, inside functions")
    elif under(src, "wallet", "p2p"):
        if not (under(dst, "protocol", *NODE_BASE, own) or is_pure_config(dst) or dst == "node"):
            problems.append(f"{own}/ imports only protocol, node base modules and itself")
    elif under(src, "trainer"):
        if not (under(dst, "trainer", *TRAINER_MAY_USE) or dst == "protocol"):
            problems.append("trainer/ knows nothing of the network, keys or node (protocol.bundle only)")
    elif under(src, "miner", "validator") and under(dst, "miner", "validator") and own != dst.split(".")[0]:
        problems.append("miner/ and validator/ meet only through protocol messages")
    if under(src, "miner", "validator", "wallet", "p2p", "trainer") and under(dst, "node.core", "node.cli"):
        problems.append("components never import the core or the CLI: use node.service.CoreContext")
    return problems


def all_imports() -> Iterator[Import]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = module_name(path, REPO)
            yield from imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")


def test_the_repository_keeps_the_import_rules() -> None:
    imports = list(all_imports())
    # The walk really sees the code: a known lazy import of the wiring, a known top-level one.
    assert Import("node.core", "trio", 0, False) in [Import(i.source, i.target, 0, i.lazy) for i in imports]
    assert any(i.source == "node.cli.launch" and i.target == "node.core" and i.lazy for i in imports)
    broken = [
        f"{imp.source}:{imp.line} imports {imp.target}: {why}" for imp in imports for why in violations(imp)
    ]
    assert not broken, "import rules broken (docs/ARCHITECTURE.md):\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("protocol.messages", "from node.events import Event", "protocol/ imports nothing"),
        ("protocol.messages", "from ..wallet import keys", "protocol/ imports nothing"),
        ("node.store", "import p2p.host", "node base modules"),
        ("node.logs", "from wallet.signer import LocalSigner", "node base modules"),
        ("node.paths", "from node.core import NodeCore", "node base modules"),
        ("node.core", "from p2p.service import P2PService", "imports components lazily"),
        ("node.cli.launch", "import desktop.app", "nothing outside desktop"),
        ("trainer.worker", "from p2p.blobs import BlobService", "trainer/ knows nothing"),
        ("trainer.worker", "def f():\n    import wallet.keys", "trainer/ knows nothing"),
        ("trainer.worker", "from protocol.signing import sign", "trainer/ knows nothing"),
        ("miner.loop", "from validator.scoring import rank_scores", "meet only through protocol"),
        ("validator.intake", "import miner.loop", "meet only through protocol"),
        ("p2p.host", "from wallet.signer import LocalSigner", "p2p/ imports only"),
        ("wallet.chain", "from p2p.gossip import Gossip", "wallet/ imports only"),
        ("miner.service", "from node.core import NodeCore", "never import the core"),
        ("wallet.cli", "from node.core import NodeCore", "command modules import the core"),
        ("miner.cli", "import p2p.service", "command modules import the core"),
        ("wallet.cli_validator", "import desktop.app", "nothing outside desktop"),
        ("p2p.config", "from protocol.errors import ProtocolError", "config sections are pure"),
        ("validator.scoring", "from PySide6.QtCore import QObject", "only desktop/ may import Qt"),
        ("node.events", "import pyqtgraph", "only desktop/ may import Qt"),
        ("miner.loop", "from devnet.main import run_devnet", "only the CLI and the desktop start a devnet"),
        ("node.cli.devnet_cmd", "from devnet.main import run_devnet", "imports components lazily"),
        ("devnet.main", "import desktop.app", "nothing outside desktop"),
    ],
)
def test_each_rule_catches_its_violation(module: str, source: str, rule: str) -> None:
    found = [why for imp in imports_of(source, module) for why in violations(imp)]
    assert any(rule in why for why in found), found


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("node.core", "def plug_in():\n    import p2p.service"),
        ("node.cli.init_cmd", "def run():\n    from wallet.walletdir import WalletDir"),
        ("wallet.cli", "from node.cli.common import Subparsers\nfrom node.cli.exitcodes import ExitCode"),
        ("miner.cli", "def run():\n    from node.core import NodeCore\n    import p2p.service"),
        ("node.config", "from p2p.config import P2PConfig"),
        ("node.service", "import typing\nif typing.TYPE_CHECKING:\n    from node.core import NodeCore"),
        ("node.profile", "from protocol.signing import Domain"),
        ("wallet.password", "from node.logs import register_secret"),
        ("p2p.service", "from node.events import EventBus\nfrom node.service import CoreContext"),
        ("trainer.worker", "from protocol.bundle import write_bundle\nfrom .recipes import base"),
        ("miner.loop", "from protocol.messages import Receipt\nfrom trainer.jobs import Job"),
        ("desktop.app", "from PySide6.QtWidgets import QApplication\nfrom node.core import NodeCore"),
        ("node.cli.devnet_cmd", "def run():\n    from devnet.main import run_devnet"),
        ("devnet.network", "from miner.service import MinerService\nfrom validator.service import X\n"
         "from wallet.devchain import DevChain\nfrom node.core import NodeCore"),
    ],
)
def test_allowed_imports_pass(module: str, source: str) -> None:
    assert [why for imp in imports_of(source, module) for why in violations(imp)] == []


def test_relative_imports_resolve() -> None:
    found = {imp.target for imp in imports_of("from . import keys\nfrom ..node import events", "wallet.cli")}
    assert {"wallet.keys", "node.events"} <= found
    found = {imp.target for imp in imports_of("from .layers import x", "trainer.bitnet", is_package=True)}
    assert "trainer.bitnet.layers" in found
