"""Typed configuration with defaults in one place.

Every component owns its section as a dataclass of its own (``p2p.config.P2PConfig``,
``wallet.config.ChainConfig``...); those modules are pure dataclasses that import nothing
of ours, so this module can gather them without an import cycle. Values come from, in order
of precedence: environment variables ``MAGNET_<SECTION>__<FIELD>``, the TOML file
(``config.toml`` in the platform config directory, or ``MAGNET_CONFIG``), then the defaults.

Every duration is a number of seconds (a float), so a devnet task can last a minute where a
real one lasts hours.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from miner.config import MinerConfig
from p2p.config import P2PConfig
from trainer.config import DilocoConfig, TrainerConfig
from validator.config import ValidatorConfig
from wallet.config import ChainConfig, WalletConfig

APP_NAME = "magnet"
ENV_PREFIX = "MAGNET_"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class NodeSettings:
    """Settings of the node process itself."""

    data_dir: str = field(
        default="", metadata={"help": "Data directory; empty: MAGNET_HOME or the platform data dir."}
    )
    network: str = field(
        default="", metadata={"help": "Path of the network profile file to join; empty: none."}
    )
    log_level: str = field(default="INFO", metadata={"help": "Root log level (DEBUG, INFO, WARNING, ERROR)."})
    log_max_bytes: int = field(default=5_000_000, metadata={"help": "Size at which the log file rotates."})
    log_backups: int = field(default=5, metadata={"help": "Rotated log files kept."})
    stop_timeout: float = field(default=5.0, metadata={"help": "Seconds allowed for a clean stop."})
    start_timeout: float = field(
        default=60.0, metadata={"help": "Seconds the node's services may take to start."}
    )
    password_file: str = field(
        default="",
        metadata={"help": "Wallet password file for unattended starts; empty: ask, or the keyring."},
    )


@dataclass
class Config:
    """The whole configuration: one section per component."""

    node: NodeSettings = field(default_factory=NodeSettings)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    wallet: WalletConfig = field(default_factory=WalletConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    miner: MinerConfig = field(default_factory=MinerConfig)
    validator: ValidatorConfig = field(default_factory=ValidatorConfig)
    diloco: DilocoConfig = field(default_factory=DilocoConfig)


def default_config_path() -> Path:
    """``MAGNET_CONFIG`` or ``config.toml`` in the platform config directory."""
    env = os.environ.get("MAGNET_CONFIG")
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build a ``Config`` from defaults, the TOML file, the environment and ``overrides``.

    A missing file is not an error (defaults apply); an unreadable one, an unknown key or a
    value of the wrong type raises ``ConfigError`` naming the key and what is expected.
    """
    env = os.environ if env is None else env
    config = Config()
    path = default_config_path() if path is None else path
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}. Fix or delete it.") from exc
        apply_mapping(config, data, source=str(path))
    apply_env(config, env)
    if overrides:
        apply_mapping(config, overrides, source="overrides")
    return config


def apply_mapping(config: Config, data: Mapping[str, Any], source: str) -> None:
    """Set sections and fields of ``config`` from a nested mapping, type-checked."""
    sections = {f.name: f for f in dataclasses.fields(config)}
    for section_name, values in data.items():
        if section_name not in sections:
            raise ConfigError(f"{source}: unknown section [{section_name}]; known: {', '.join(sections)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{section_name}] must be a table")
        section = getattr(config, section_name)
        for key, value in values.items():
            set_field(section, section_name, key, value, source)


def apply_env(config: Config, env: Mapping[str, str]) -> None:
    """Apply ``MAGNET_<SECTION>__<FIELD>=value`` variables (case-insensitive names)."""
    sections = {f.name for f in dataclasses.fields(config)}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section_name, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        if section_name not in sections:
            raise ConfigError(
                f"environment {name}: unknown section {section_name!r}; known: {', '.join(sections)}"
            )
        set_field(getattr(config, section_name), section_name, key, raw, f"environment {name}")


def set_field(section: Any, section_name: str, key: str, value: Any, source: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ConfigError(
            f"{source}: unknown key {section_name}.{key}; known keys: {', '.join(sorted(fields))}"
        )
    hint = typing.get_type_hints(type(section))[key]
    try:
        setattr(section, key, coerce(value, hint))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {section_name}.{key}: {exc}") from exc


def coerce(value: Any, hint: Any) -> Any:
    """Convert ``value`` (from TOML or an environment string) to the type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or value == "":
            return None
        return coerce(value, args[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1] or (str,)
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        items = [coerce(v, item) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table, got {type(value).__name__}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise TypeError(f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value
    if hint is Path:
        return Path(value)
    raise TypeError(f"unsupported config type {hint!r}")


def to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (TOML-serialisable: no None values)."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if v is not None}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        if isinstance(obj, Path):
            return str(obj)
        return obj

    result: dict[str, Any] = clean(dataclasses.asdict(config))
    return result


def to_toml(config: Config) -> str:
    return tomli_w.dumps(to_dict(config))


def describe(config: Config) -> list[tuple[str, str, Any, str]]:
    """(section, key, value, help) for every field: the data behind ``magnet config show``."""
    rows = []
    for section_field in dataclasses.fields(config):
        section = getattr(config, section_field.name)
        for f in dataclasses.fields(section):
            rows.append((section_field.name, f.name, getattr(section, f.name), f.metadata.get("help", "")))
    return rows
