"""Fixtures of the node tests: a config whose data dir lives in tmp_path, and small services."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import Config, load_config


@pytest.fixture
def node_config(tmp_path: Path) -> Config:
    config = load_config(path=tmp_path / "absent.toml", env={})
    config.node.data_dir = str(tmp_path / "home")
    config.node.stop_timeout = 2.0
    config.node.start_timeout = 10.0
    return config
