"""A status section as the validator will provide one (``validator/status.py``)."""

from __future__ import annotations

from typing import Any


def status_section(config: Any, data_dir: Any) -> dict[str, Any]:
    return {"tasks_running": 2, "store": str(data_dir.store)}
