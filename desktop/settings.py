"""The desktop app's own settings: typed, with defaults in one place, saved as ``desktop.json``.

They live in the data directory next to the wallet and are applied onto the node's ``Config``
(``apply_to``) each time the core starts, so the app and ``magnet --headless`` read one config
system and the app only adds what a person chose in the wizard or on the Settings screen.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from node.config import Config

SETTINGS_FILE = "desktop.json"
NETWORK_PROFILE = "profile"  # a network profile file
NETWORK_PEERS = "peers"  # bootstrap peers typed in (with a profile for the chain)
NETWORK_DEVNET = "devnet"  # a local devnet the app starts in another process
NETWORK_MODES = (NETWORK_PROFILE, NETWORK_PEERS, NETWORK_DEVNET)


@dataclass
class DesktopSettings:
    """What the person chose: network, limits, when to mine, start at login."""

    network_mode: str = NETWORK_PROFILE
    network_file: str = ""  # the profile (for NETWORK_PEERS: the chain part of it)
    bootstrap_peers: list[str] = field(default_factory=list)
    miner_config_file: str = ""  # a TOML with [miner] settings (a devnet writes one for joiners)
    payout_address: str = ""
    max_threads: int = 0
    max_ram_mb: int = 0
    gpu: str = "auto"
    idle_only: bool = False
    idle_after_s: float = 300.0
    schedule: list[str] = field(default_factory=list)
    pause_on_battery: bool = True
    enabled_kinds: list[str] = field(default_factory=list)  # empty: the miner's default (all)
    start_at_login: bool = False
    first_run_done: bool = False

    @classmethod
    def load(cls, data_dir: Path) -> DesktopSettings:
        path = data_dir / SETTINGS_FILE
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()  # unreadable: start over with the wizard rather than crash
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = data_dir / SETTINGS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2), encoding="utf-8")
        os.replace(tmp, path)

    def apply_to(self, config: Config) -> None:
        """Onto the node's config: the miner waits for the Start button (autostart off)."""
        if self.miner_config_file and Path(self.miner_config_file).exists():
            _apply_miner_file(config, Path(self.miner_config_file))
        m = config.miner
        m.autostart = False
        if self.max_threads:  # 0: keep what the config (or a devnet's miner.toml) says
            m.max_threads = self.max_threads
        if self.max_ram_mb:
            m.max_ram_mb = self.max_ram_mb
        if self.gpu != "auto":
            m.gpu = self.gpu
        m.idle_only, m.idle_after_s, m.schedule = self.idle_only, self.idle_after_s, list(self.schedule)
        m.pause_on_battery = self.pause_on_battery
        if self.enabled_kinds:
            m.enabled_kinds = list(self.enabled_kinds)
        if self.network_file:
            config.node.network = self.network_file


def _apply_miner_file(config: Config, path: Path) -> None:
    import tomllib

    from node.config import apply_mapping

    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    apply_mapping(config, {k: v for k, v in data.items() if k in ("miner", "p2p")}, source=str(path))


def data_dir_pointer() -> Path:
    """Where the app remembers a data folder chosen on the Settings screen (per user, not per folder)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("magnet")) / "desktop-data-dir"


def chosen_data_dir() -> str:
    """The folder chosen in Settings, or "" (then MAGNET_HOME or the platform's folder applies)."""
    pointer = data_dir_pointer()
    return pointer.read_text(encoding="utf-8").strip() if pointer.exists() else ""


def choose_data_dir(path: Path) -> None:
    pointer = data_dir_pointer()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(path), encoding="utf-8")
