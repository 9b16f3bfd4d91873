from __future__ import annotations

import logging
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail

from wallet.errors import NoPassword
from wallet.password import cache_password, cached_password, get_password, keyring_status, password_and_source


class MemoryKeyring(KeyringBackend):
    """A secure-looking in-memory backend (unit-test double for the Secret Service)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


class PlaintextKeyring(MemoryKeyring):
    """Stands for keyrings.alt.file.PlaintextKeyring (module name is what is judged)."""


PlaintextKeyring.__module__ = "keyrings.alt.file"


@pytest.fixture
def restore_keyring():  # type: ignore[no-untyped-def]
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def test_file_then_env_then_prompt(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text("from-file\nignored\n")
    file.chmod(0o600)
    assert get_password("x", password_file=file, env={"MAGNET_PASSWORD": "env"}) == "from-file"
    assert get_password("x", env={"MAGNET_PASSWORD": "env"}) == "env"
    assert get_password("x", env={}, interactive=True, prompt=lambda _: "typed") == "typed"


def test_headless_without_a_source_says_what_to_pass() -> None:
    with pytest.raises(NoPassword, match="--password-file FILE or set MAGNET_PASSWORD"):
        get_password("unlock", env={}, interactive=False)


def test_bad_password_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(NoPassword, match="empty"):
        get_password("x", password_file=empty)
    with pytest.raises(NoPassword, match="cannot read"):
        get_password("x", password_file=tmp_path / "absent")


def test_group_readable_password_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "pw"
    file.write_text("s3cret-value\n")
    file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert get_password("x", password_file=file) == "s3cret-value"
    assert "chmod 600" in caplog.text


def test_confirmation_mismatch_and_empty_prompt() -> None:
    answers = iter(["a", "b"])
    with pytest.raises(NoPassword, match="differ"):
        get_password("x", env={}, interactive=True, confirm=True, prompt=lambda _: next(answers))
    with pytest.raises(NoPassword, match="empty"):
        get_password("x", env={}, interactive=True, prompt=lambda _: "")


@pytest.mark.parametrize(
    ("backend", "reason"),
    [
        (fail.Keyring(), "no OS keyring"),
        (PlaintextKeyring(), "plain file"),
    ],
)
def test_insecure_keyrings_are_never_used(restore_keyring, backend, reason, caplog) -> None:  # type: ignore[no-untyped-def]
    keyring.set_keyring(backend)
    status = keyring_status()
    assert not status.secure and reason in status.reason
    with caplog.at_level(logging.INFO):
        assert not cache_password("0xabc", "pw")
    assert "not cached" in caplog.text and "pw" not in caplog.text.replace("password", "")
    assert cached_password("0xabc") is None
    if isinstance(backend, PlaintextKeyring):
        assert backend.store == {}


def test_chainer_with_no_or_an_insecure_backend_is_insecure(restore_keyring, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    keyring.set_keyring(chainer.ChainerBackend())
    assert not keyring_status().secure
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [MemoryKeyring(), PlaintextKeyring()])
    status = keyring_status()
    assert not status.secure and "plain file" in status.reason


def test_secure_keyring_caches_the_password(restore_keyring) -> None:  # type: ignore[no-untyped-def]
    memory = MemoryKeyring()
    keyring.set_keyring(memory)
    assert keyring_status().secure
    assert cache_password("0xabc", "pw1")
    assert get_password("x", env={}, keyring_account="0xabc", interactive=False) == "pw1"
    # A new password is always asked for, never taken from the cache.
    with pytest.raises(NoPassword):
        get_password("x", env={}, keyring_account="0xabc", confirm=True, interactive=False)


def test_the_source_of_a_password_is_reported(tmp_path: Path, restore_keyring) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "pw"
    file.write_text("f\n")
    file.chmod(0o600)
    assert password_and_source("x", password_file=file)[1] == "file"
    assert password_and_source("x", env={"MAGNET_PASSWORD": "e"})[1] == "env"
    keyring.set_keyring(MemoryKeyring())
    cache_password("0xdef", "k")
    assert password_and_source("x", env={}, keyring_account="0xdef") == ("k", "keyring")
    assert password_and_source("x", env={}, interactive=True, prompt=lambda _: "p") == ("p", "prompt")


def test_the_backend_keyring_discovers_here_is_used_safely(restore_keyring, caplog) -> None:  # type: ignore[no-untyped-def]
    """Through keyring's own backend discovery (no backend set by the test): a headless machine
    without Secret Service gets keyring's fail/chainer backend, which must be refused with a reason,
    and the password is then asked for; where a secure OS keyring exists, it caches and returns it."""
    import keyring.core

    keyring.core.init_backend()
    status = keyring_status()
    assert status.reason
    account = "0x" + "ab" * 20
    if not status.secure:
        insecure = ("keyring.backends.fail", "keyring.backends.chainer", "keyring.backends.null")
        insecure += ("keyrings.alt",)
        assert type(status.backend).__module__.startswith(insecure)
        with caplog.at_level(logging.INFO):
            assert not cache_password(account, "typed-secret-1")
        assert "not cached" in caplog.text and status.reason in caplog.text
        assert "typed-secret-1" not in caplog.text
        assert cached_password(account) is None
        # No secure keyring: ask on the terminal instead.
        asked: list[str] = []
        got = password_and_source(
            "unlock", env={}, keyring_account=account, interactive=True,
            prompt=lambda text: asked.append(text) or "typed-secret-2",
        )
        assert got == ("typed-secret-2", "prompt") and asked == ["Password to unlock: "]
        # ... or, headless, say what to pass.
        with pytest.raises(NoPassword, match="--password-file"):
            get_password("unlock", env={}, keyring_account=account, interactive=False)
    else:  # pragma: no cover - only on a desktop with a real OS keyring
        try:
            assert cache_password(account, "typed-secret-3")
            got = password_and_source("unlock", env={}, keyring_account=account)
            assert got == ("typed-secret-3", "keyring")
        finally:
            from wallet.password import forget_password

            forget_password(account)
