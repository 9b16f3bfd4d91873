"""Configuration section of `trainer` (a pure dataclass: imports nothing of ours).

Every duration is in seconds. Each field carries a help text; `node.config` gathers this
section into the node's one `Config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainerConfig:
    """Settings of `trainer`."""

    placeholder_never_used: bool = field(default=False, metadata={"help": "Remove once real fields exist."})
