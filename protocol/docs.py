"""Generate the message reference of docs/PROTOCOL.md from the registry, so the two cannot drift.

``python -m protocol.docs docs/PROTOCOL.md`` rewrites the section between the markers; a test fails
when the committed document differs from what the registry generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

from protocol import messages as _messages  # noqa: F401  (importing registers every released type)
from protocol.base import Message, registry
from protocol.schema import FieldSpec, type_string

BEGIN = "<!-- BEGIN GENERATED: message reference (python -m protocol.docs docs/PROTOCOL.md) -->"
END = "<!-- END GENERATED: message reference -->"


def message_reference() -> str:
    """Markdown: one section per registered (type, version) with its EIP-712 type string and fields."""
    parts = []
    for (_name, _version), cls in sorted(registry().items()):
        parts.append(_section(cls))
    return "\n".join(parts)


def _section(cls: type[Message]) -> str:
    doc = (cls.__doc__ or "").strip().splitlines()[0]
    lines = [
        f"### {cls.TYPE} v{cls.VERSION}",
        "",
        f"{doc} Signed by the address in `{cls.SIGNER_FIELD}`.",
        "",
        f"`{type_string(cls.TYPE, cls.FIELDS)}`",
        "",
        "| field | EIP-712 type | limits | meaning |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{s.name}` | `{s.eip712}` | {_limits(s)} | {s.help.replace('|', '/')} |" for s in cls.FIELDS
    ]
    return "\n".join(lines) + "\n"


def _limits(spec: FieldSpec) -> str:
    notes = []
    if spec.is_array:
        notes.append(f"<= {spec.max_items} items")
    if spec.element in ("string", "bytes"):
        notes.append(f"<= {spec.max_len} bytes")
    if spec.choices:
        notes.append("one of " + ", ".join(f"`{c}`" for c in spec.choices))
    if spec.pattern:
        notes.append(f"matches `{spec.pattern}`")
    return "; ".join(notes).replace("|", "\\|")


def render(document: str) -> str:
    """``document`` with its generated section replaced by the current reference."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n\n" + message_reference() + "\n" + document[end:]


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/PROTOCOL.md")
    path.write_text(render(path.read_text()))
    print(f"updated the message reference in {path}")
