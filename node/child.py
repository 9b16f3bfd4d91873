"""How the node starts its Python children, also from a frozen (PyInstaller) executable.

The miner's training child, the validator's sandbox child and the trainer worker run as separate
processes: ``python -m <module> ARGS`` from a Python install. A frozen ``magnet`` executable has no
``-m``: there ``sys.executable`` is the bundle's own binary, and it runs a child as
``magnet --child <module> ARGS`` (``main`` in node/cli hands that to ``run_child`` before argparse).
Only the modules in ``CHILD_MODULES`` can be started that way, never an arbitrary module name.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

CHILD_FLAG = "--child"
CHILD_MODULES: frozenset[str] = frozenset(
    {
        "miner.train_child",
        "validator.sandbox_child",
        "trainer.worker",
        "trainer.hardware",
        "trainer.diloco.child",
    }
)


def is_frozen() -> bool:
    """True in a PyInstaller bundle (``sys.frozen`` is set by its bootloader)."""
    return bool(getattr(sys, "frozen", False))


def child_command(module: str, frozen: bool | None = None) -> list[str]:
    """The command that starts ``module`` as a child: ``python -m module`` or ``magnet --child module``."""
    if module not in CHILD_MODULES:
        known = ", ".join(sorted(CHILD_MODULES))
        raise ValueError(f"{module!r} is not one of MAGNET's child modules ({known})")
    if is_frozen() if frozen is None else frozen:
        return [sys.executable, CHILD_FLAG, module]
    return [sys.executable, "-m", module]


def run_child(argv: Sequence[str]) -> int:
    """``magnet --child MODULE ARGS...``: run an allow-listed child module as ``python -m`` would."""
    if not argv or argv[0] not in CHILD_MODULES:
        given = repr(argv[0]) if argv else "no module"
        print(
            f"magnet: --child is for MAGNET's own child processes; {given} is not one of them "
            f"({', '.join(sorted(CHILD_MODULES))}). Run `magnet --help` for the commands.",
            file=sys.stderr,
            flush=True,
        )
        return 2
    module, args = argv[0], list(argv[1:])
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return int(code or 0)
        print(code, file=sys.stderr, flush=True)
        return 1
    return 0
