"""Building the node core the app drives (no Qt here; runs on a pool thread: it unlocks the keystore).

The same ``NodeCore`` and miner service as ``magnet mine``: the config from the usual sources, the
app's settings on top, the wallet from the data folder, the miner role plugged in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.settings import NETWORK_PEERS, DesktopSettings

if TYPE_CHECKING:
    from node.config import Config
    from node.core import NodeCore

PASSWORD_ENV = "MAGNET_PASSWORD"
APP_STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LaunchOptions:
    """What the command line may say (``magnet --data-dir D --network F --password-file P``)."""

    data_dir: Path
    config_file: Path | None = None
    network: str = ""
    password_file: str = ""


def load_node_config(options: LaunchOptions, settings: DesktopSettings) -> Config:
    from node.config import load_config

    config = load_config(path=options.config_file)
    config.node.data_dir = str(options.data_dir)
    settings.apply_to(config)
    # A training child gets up to 5 s to end at its checkpoint when mining stops: leave the node room
    # for that on top of its own services, or closing the window stops the node uncleanly.
    config.node.stop_timeout = max(config.node.stop_timeout, APP_STOP_TIMEOUT_S)
    if options.network:
        config.node.network = options.network
    if settings.network_mode == NETWORK_PEERS and settings.bootstrap_peers and config.node.network:
        config.node.network = str(profile_with_peers(Path(config.node.network), settings, options.data_dir))
    return config


def profile_with_peers(source: Path, settings: DesktopSettings, data_dir: Path) -> Path:
    """The chosen profile with the peers typed in added to its bootstrap list."""
    from node.profile import NetworkProfile

    profile = NetworkProfile.load(source)
    merged = list(dict.fromkeys([*settings.bootstrap_peers, *profile.bootstrap_peers]))
    target = data_dir / "network-with-peers.json"
    profile.with_peers(merged).save(target)
    return target


def password_without_asking(options: LaunchOptions) -> str | None:
    """A password given for unattended starts (a file or MAGNET_PASSWORD), else None: ask the person."""
    if options.password_file:
        return Path(options.password_file).expanduser().read_text(encoding="utf-8").splitlines()[0]
    return os.environ.get(PASSWORD_ENV) or None


def build_core(options: LaunchOptions, settings: DesktopSettings, password: str) -> NodeCore:
    """Unlock the wallet (scrypt: ~1 s) and make a core with the miner role; not started yet."""
    from node.core import NodeCore
    from wallet.walletdir import WalletDir

    config = load_node_config(options, settings)
    if not config.node.network:
        from node.profile import ProfileError

        raise ProfileError("no network is chosen yet: pick a network profile in Settings")
    signer = WalletDir(options.data_dir / "wallet").unlock(password)
    core = NodeCore(config, signer)
    core.plug_in("miner")
    return core
