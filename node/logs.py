"""Logging: a logger per component, a rotating file in the data directory, and a redaction guard.

Every component logs to ``magnet.<component>`` (``component_logger("p2p")``). ``setup_logging()``
attaches a rotating file handler (and optionally a console handler) to the root logger; each root
handler carries ``RedactionFilter``, which rewrites a record before any handler formats it:

- private keys: ``0x`` + 64 hex digits, or a bare run of exactly 64 hex digits. sha256 digests have
  the same shape and are redacted too: log content hashes shortened with ``short_hash()``;
- BIP-39 mnemonics: runs of 12 or more words of the English wordlist (the one eth-account ships);
- keystore ciphertext (``"ciphertext": "<hex>"`` in JSON or a Python dict repr);
- every secret registered at run time with ``register_secret()`` (passwords), verbatim.

The message, its arguments, the formatted exception and the stack text are all redacted. ``redact()``
is the same guard for text that does not go through logging (error messages printed by the CLI).
"""

from __future__ import annotations

import importlib.util
import logging
import logging.handlers
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TextIO

ROOT = "magnet"
REDACTED = "<redacted>"
MNEMONIC_MIN_WORDS = 12
MIN_SECRET_CHARS = 6
FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"

_PRIVATE_KEY = re.compile(r"(?<![0-9A-Za-z])(?:0[xX])?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_CIPHERTEXT = re.compile(r"""(["']ciphertext["']\s*:\s*["'])[0-9a-fA-F]+""")
_WORD = re.compile(r"[A-Za-z]+")
# Between two words of a phrase: spaces, commas, quotes, brackets (a list repr), nothing else.
_WORD_GAP = re.compile(r"""^[\s,'"\[\]()]{1,6}$""")
# Cheap pre-check: 12 letter-only tokens of 3-8 letters (every BIP-39 English word is) in a row.
# Most log lines have no such run and skip the exact word-by-word scan.
_PHRASE_SHAPE = re.compile(
    r"""(?<![A-Za-z])(?:[A-Za-z]{3,8}[\s,'"\[\]()]{1,6}){"""
    + str(MNEMONIC_MIN_WORDS - 1)
    + r""",}[A-Za-z]{3,8}(?![A-Za-z])"""
)

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def component_logger(component: str) -> logging.Logger:
    """The logger of one component: ``magnet.<component>``."""
    return logging.getLogger(f"{ROOT}.{component}")


def short_hash(digest: str, length: int = 16) -> str:
    """A digest shortened for logs (a full 64-hex digest would be redacted as a possible key)."""
    return digest[:length] + "…" if len(digest) > length else digest


def register_secret(secret: str) -> None:
    """Never write ``secret`` (a password, a passphrase) to any log from now on.

    Secrets shorter than ``MIN_SECRET_CHARS`` are not registered: replacing every "wrong" or "1234"
    would garble the logs and hint at the secret; the wallet refuses such passwords for new keys.
    """
    if len(secret) >= MIN_SECRET_CHARS:
        with _secrets_lock:
            _secrets.add(secret)


def forget_secrets() -> None:
    """Drop the registered secrets (tests; a node keeps them for its lifetime)."""
    with _secrets_lock:
        _secrets.clear()


@lru_cache(maxsize=1)
def bip39_words() -> frozenset[str]:
    """The English BIP-39 wordlist shipped with eth-account (found without importing it: it is slow)."""
    spec = importlib.util.find_spec("eth_account")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("eth-account is not installed: reinstall MAGNET (make install)")
    path = Path(next(iter(spec.submodule_search_locations))) / "hdaccount" / "wordlist" / "english.txt"
    words = frozenset(w.strip() for w in path.read_text(encoding="utf-8").split() if w.strip())
    if len(words) != 2048:
        raise RuntimeError(f"{path} holds {len(words)} words, not the 2048 of BIP-39")
    return words


def redact(text: str) -> str:
    """``text`` with every private key, mnemonic, keystore ciphertext and registered secret removed."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = _CIPHERTEXT.sub(lambda m: m.group(1) + REDACTED, text)
    text = _PRIVATE_KEY.sub(REDACTED, text)
    return _redact_mnemonics(text)


def _redact_mnemonics(text: str) -> str:
    if not _PHRASE_SHAPE.search(text):
        return text
    words = bip39_words()
    spans: list[tuple[int, int]] = []
    run: list[re.Match[str]] = []

    def close_run() -> None:
        if len(run) >= MNEMONIC_MIN_WORDS:
            spans.append((run[0].start(), run[-1].end()))
        run.clear()

    for match in _WORD.finditer(text):
        if match.group().lower() not in words:
            close_run()
            continue
        if run and not _WORD_GAP.match(text[run[-1].end():match.start()]):
            close_run()
        run.append(match)
    close_run()
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


class RedactionFilter(logging.Filter):
    """Rewrites each record so no handler can write a secret. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record, nor leak its args
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            # The traceback object's frames could be re-rendered by another formatter: drop it.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def guard(handler: logging.Handler) -> logging.Handler:
    """Put the redaction filter on ``handler`` (once). Use it for any handler added to the root."""
    if not any(isinstance(f, RedactionFilter) for f in handler.filters):
        handler.addFilter(RedactionFilter())
    return handler


@dataclass
class LogSetup:
    """The handlers ``setup_logging`` attached; ``close()`` detaches and closes them."""

    handlers: list[logging.Handler] = field(default_factory=list)
    previous_level: int = logging.WARNING

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.close()
        self.handlers.clear()
        root.setLevel(self.previous_level)


def setup_logging(
    log_file: Path | None,
    level: str = "INFO",
    max_bytes: int = 5_000_000,
    backups: int = 5,
    console: TextIO | None = None,
) -> LogSetup:
    """Attach a rotating ``log_file`` handler (and a ``console`` one) to the root logger, guarded.

    Also guards root handlers that were there before, and makes py-libp2p's logger propagate
    (it turns propagation off when imported).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    root = logging.getLogger()
    setup = LogSetup(previous_level=root.level)
    formatter = logging.Formatter(FORMAT)
    if log_file is not None:
        log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        setup.handlers.append(file_handler)
    if console is not None:
        setup.handlers.append(logging.StreamHandler(console))
    for handler in setup.handlers:
        handler.setFormatter(formatter)
        root.addHandler(guard(handler))
    for handler in root.handlers:
        guard(handler)
    root.setLevel(numeric)
    logging.getLogger("libp2p").propagate = True
    return setup
