"""Artifact bundles: round trip with real safetensors files, and every extraction attack refused cleanly."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from protocol.bundle import (
    BundleCaps,
    extract_bundle,
    file_sha256,
    read_manifest,
    read_manifest_from,
    write_bundle,
)
from protocol.bundle_manifest import MAGIC
from protocol.errors import BundleError, ProtocolError


def _model_dir(root: Path) -> Path:
    src = root / "adapter"
    src.mkdir()
    save_file(
        {
            "lora_A.weight": np.arange(32, dtype=np.float32).reshape(4, 8),
            "lora_B.weight": np.ones((8, 4), np.float16),
        },
        str(src / "adapter_model.safetensors"),
    )
    (src / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 8}')
    (src / "tokenizer").mkdir()
    (src / "tokenizer" / "vocab.txt").write_text("hello\nworld\n")
    return src


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "artifact.magnet"
    write_bundle(_model_dir(tmp_path), out, "lora", {"base_model_sha256": "ab" * 32})
    return out


def _craft(
    path: Path, manifest: dict[str, Any], bodies: list[bytes], raw_manifest: bytes | None = None
) -> Path:
    """Write a bundle by hand, bypassing write_bundle's checks (as an attacker would)."""
    header = raw_manifest or json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(MAGIC + len(header).to_bytes(4, "big") + header + b"".join(bodies))
    return path


def _entry(path: str, body: bytes, **extra: Any) -> dict[str, Any]:
    return {"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), **extra}


def _manifest(*files: dict[str, Any]) -> dict[str, Any]:
    return {"format": 1, "kind": "lora", "meta": {}, "files": list(files)}


def _assert_nothing_left(parent: Path, before: set[str]) -> None:
    assert {p.name for p in parent.iterdir()} == before, "a failed extraction left files behind"


def _extract_fails(bundle_path: Path, match: str, caps: BundleCaps | None = None) -> None:
    parent = bundle_path.parent
    before = {p.name for p in parent.iterdir()}
    with pytest.raises(BundleError, match=match):
        extract_bundle(bundle_path, parent / "out", caps)
    _assert_nothing_left(parent, before)


# ---------------------------------------------------------------------------------------------------
# Round trip


def test_round_trip_with_real_safetensors(tmp_path: Path, bundle: Path) -> None:
    manifest = read_manifest(bundle)
    assert manifest.kind == "lora" and manifest.meta == {"base_model_sha256": "ab" * 32}
    assert [f.path for f in manifest.files] == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer/vocab.txt",
    ]
    tensors = manifest.file("adapter_model.safetensors").tensors
    assert tensors is not None
    assert [(t.name, t.dtype, t.shape) for t in tensors] == [
        ("lora_A.weight", "F32", (4, 8)),
        ("lora_B.weight", "F16", (8, 4)),
    ]
    dest = tmp_path / "extracted"
    assert extract_bundle(bundle, dest) == manifest
    loaded = load_file(str(dest / "adapter_model.safetensors"))
    assert np.array_equal(loaded["lora_A.weight"], np.arange(32, dtype=np.float32).reshape(4, 8))
    for entry in manifest.files:
        assert hashlib.sha256((dest / entry.path).read_bytes()).digest() == entry.sha256
    assert all(p.is_dir() or (p.is_file() and not p.is_symlink()) for p in dest.rglob("*"))
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_writing_is_deterministic_and_extracts_into_an_existing_empty_dir(
    tmp_path: Path, bundle: Path
) -> None:
    again = tmp_path / "again.magnet"
    write_bundle(tmp_path / "adapter", again, "lora", {"base_model_sha256": "ab" * 32})
    assert file_sha256(again) == file_sha256(bundle)
    (tmp_path / "empty").mkdir()
    extract_bundle(bundle, tmp_path / "empty")
    assert (tmp_path / "empty" / "adapter_config.json").is_file()


# ---------------------------------------------------------------------------------------------------
# Writing refuses what extraction would refuse


def test_write_refuses_pickle_files(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(BundleError, match=r"pickle-based format \(.bin\).*safetensors"):
        write_bundle(src, tmp_path / "out.magnet", "lora")
    assert not (tmp_path / "out.magnet").exists()


def test_write_refuses_symlinks(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    os.symlink("/etc/passwd", src / "secrets.txt")
    with pytest.raises(BundleError, match="symbolic link"):
        write_bundle(src, tmp_path / "out.magnet", "lora")


def test_write_refuses_other_extensions_and_output_inside_source(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    with pytest.raises(BundleError, match="inside the source"):
        write_bundle(src, src / "self.magnet", "lora")
    (src / "run.sh").write_text("rm -rf /")
    with pytest.raises(BundleError, match=r"extension '.sh' is not allowed"):
        write_bundle(src, tmp_path / "out.magnet", "lora")
    # A model directory with docs beside it (the bundled base model's README.md) packs without them.
    (src / "README.md").write_text("# a model")
    manifest = write_bundle(src, tmp_path / "out.magnet", "model", skip_other_extensions=True)
    names = {f.path for f in manifest.files}
    assert "README.md" not in names and "run.sh" not in names and names
    only_docs = tmp_path / "docs"
    only_docs.mkdir()
    (only_docs / "README.md").write_text("x")
    with pytest.raises(BundleError, match="no files a bundle admits"):
        write_bundle(only_docs, tmp_path / "docs.magnet", "model", skip_other_extensions=True)


def test_write_refuses_bad_kind_meta_and_empty_dirs(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    with pytest.raises(BundleError, match="kind"):
        write_bundle(src, tmp_path / "o", "LoRA!")
    with pytest.raises(BundleError, match="meta key"):
        write_bundle(src, tmp_path / "o", "lora", {"Bad Key": "x"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no files"):
        write_bundle(tmp_path / "empty", tmp_path / "o", "lora")


# ---------------------------------------------------------------------------------------------------
# Extraction attacks


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil.txt", r"'\.\.'"),
        ("a/../../evil.txt", r"'\.\.'"),
        ("/etc/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
        ("a\\..\\evil.txt", "backslash"),
        (".bashrc.txt", "component"),
        ("a//b.txt", "component"),
        ("CON.txt", "reserved device name"),
        ("a/b/c/d/e.txt", "too long or too deep"),
        ("model.pkl", "pickle-based"),
        ("model.ckpt", "pickle-based"),
        ("weights.npy", "pickle-based"),
        ("payload.so", "not allowed"),
        ("noext", "not allowed"),
    ],
)
def test_unsafe_paths_are_refused(tmp_path: Path, name: str, match: str) -> None:
    body = b"x"
    crafted = _craft(tmp_path / "evil.magnet", _manifest(_entry(name, body)), [body])
    with pytest.raises(BundleError, match=match):
        read_manifest(crafted)
    _extract_fails(crafted, match)
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["a.txt", "a.txt"], "same file path twice"),
        (["A.txt", "a.txt"], "same file path twice"),
        (["x.txt", "x.txt/y.txt"], "both a file and a directory"),
    ],
)
def test_duplicate_and_clashing_names_are_refused(tmp_path: Path, names: list[str], match: str) -> None:
    crafted = _craft(
        tmp_path / "dup.magnet", _manifest(*[_entry(n, b"x") for n in names]), [b"x"] * len(names)
    )
    _extract_fails(crafted, match)


def test_symlinked_or_non_empty_destination_is_refused(tmp_path: Path, bundle: Path) -> None:
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(BundleError, match="symbolic link"):
        extract_bundle(bundle, tmp_path / "link")
    (tmp_path / "target" / "keep.txt").write_text("mine")
    with pytest.raises(BundleError, match="not an empty directory"):
        extract_bundle(bundle, tmp_path / "target")
    assert [p.name for p in (tmp_path / "target").iterdir()] == ["keep.txt"]
    with pytest.raises(BundleError, match="parent directory"):
        extract_bundle(bundle, tmp_path / "missing" / "dest")


@pytest.mark.parametrize(
    ("caps", "match"),
    [
        (BundleCaps(max_files=2), "1 to 2 files"),
        (BundleCaps(max_total_bytes=200), "more than the cap"),
        (BundleCaps(max_file_bytes=100), "per-file cap"),
        (BundleCaps(max_small_file_bytes=10), "non-safetensors"),
        (BundleCaps(max_manifest_bytes=100), "manifest of .* bytes exceeds"),
        (BundleCaps(max_tensors_per_file=1), "at most 1 entries"),
    ],
)
def test_caps_are_enforced_before_writing_anything(bundle: Path, caps: BundleCaps, match: str) -> None:
    with pytest.raises(BundleError, match=match):
        read_manifest(bundle, caps)
    _extract_fails(bundle, match, caps)


def test_truncated_bundles_are_refused(bundle: Path) -> None:
    data = bundle.read_bytes()
    for cut in (0, 5, 11, 40, len(data) // 2, len(data) - 1):
        bundle.write_bytes(data[:cut])
        _extract_fails(bundle, "truncated|bad magic")


def test_trailing_bytes_are_refused(bundle: Path) -> None:
    bundle.write_bytes(bundle.read_bytes() + b"\x00")
    with pytest.raises(BundleError, match="trailing bytes"):
        read_manifest(bundle)
    _extract_fails(bundle, "trailing bytes")


def test_tampered_file_bytes_fail_the_hash(bundle: Path) -> None:
    data = bytearray(bundle.read_bytes())
    data[-3] ^= 0xFF  # inside the last file (tokenizer/vocab.txt)
    bundle.write_bytes(bytes(data))
    assert read_manifest(bundle)  # the header alone cannot tell
    _extract_fails(bundle, "sha256 does not match")


def test_manifest_that_lies_about_tensors_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    save_file({"w": np.zeros((2, 2), np.float32)}, str(src / "m.safetensors"))
    body = (src / "m.safetensors").read_bytes()
    lie = _entry("m.safetensors", body, tensors=[{"name": "w", "dtype": "F16", "shape": [2, 2]}])
    _extract_fails(_craft(tmp_path / "lie.magnet", _manifest(lie), [body]), "tensor table differs")


def _safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 12, "data region"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12, "gaps or overlaps"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\x00" * 8, "do not fit shape"),
        ({"w": {"dtype": "PICKLE", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8, "unsupported dtype"),
        ({"w": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8, "unsupported dtype"),
        ({"w": {"dtype": "F32", "shape": [2]}}, b"\x00" * 8, "exactly dtype"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ],
)
def test_malformed_safetensors_headers_are_refused(
    tmp_path: Path, header: dict[str, Any], data: bytes, match: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.safetensors").write_bytes(_safetensors_bytes(header, data))
    with pytest.raises(BundleError, match=match):
        write_bundle(src, tmp_path / "o.magnet", "lora")


def test_safetensors_header_length_beyond_the_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(BundleError, match="header length"):
        write_bundle(src, tmp_path / "o.magnet", "lora")


def test_invalid_json_file_content_is_refused(tmp_path: Path) -> None:
    body = b"{not json"
    _extract_fails(
        _craft(tmp_path / "j.magnet", _manifest(_entry("config.json", body)), [body]), "not valid UTF-8 JSON"
    )


@pytest.mark.parametrize(
    ("manifest", "match"),
    [
        (b'{"files":[], "format":1,"kind":"lora","meta":{}}', "1 to 64 files"),
        (
            b'{"files":[{"path":"a.txt","sha256":"'
            + b"0" * 64
            + b'","size":1}],"format":1,"kind":"lora","meta":{}} ',
            "canonical",
        ),
        (b'{"format":2,"kind":"lora","meta":{},"files":[]}', "format 2"),
        (b'{"files":[],"format":1,"kind":"lora","meta":{},"meta":{}}', "duplicate keys"),
        (
            b'{"files":[{"path":"a.txt","sha256":"x","size":1}],"format":1,"kind":"lora","meta":{}}',
            "64 lowercase",
        ),
        (
            b'{"files":[{"path":"a.txt","sha256":"'
            + b"0" * 64
            + b'","size":1.0}],"format":1,"kind":"lora","meta":{}}',
            "integers",
        ),
        (
            b'{"files":[{"path":"a.txt","sha256":"'
            + b"0" * 64
            + b'","size":-1}],"format":1,"kind":"lora","meta":{}}',
            "non-negative",
        ),
        (b"\xff", "not valid UTF-8"),
        # Deep enough to overflow the C stack: py_ecc raises the recursion limit to 100,000.
        (b"[" * 100_000, "nests deeper"),
        (b"[" * 200_000 + b"]" * 200_000, "nests deeper"),
    ],
)
def test_malformed_manifests_are_refused(tmp_path: Path, manifest: bytes, match: str) -> None:
    crafted = _craft(tmp_path / "m.magnet", {}, [b"x"], raw_manifest=manifest)
    with pytest.raises(BundleError, match=match):
        read_manifest(crafted)


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "zip.magnet").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(BundleError, match="bad magic"):
        read_manifest(tmp_path / "zip.magnet")
    (tmp_path / "v9.magnet").write_bytes(b"MAGNETB\x09" + b"\x00" * 100)
    with pytest.raises(BundleError, match="format 9"):
        read_manifest(tmp_path / "v9.magnet")


# ---------------------------------------------------------------------------------------------------
# Fuzzing: mutated bundles only ever raise ProtocolError and leave nothing behind


def _try_extract(data: bytes, work: Path) -> None:
    path = work / "fuzz.magnet"
    path.write_bytes(data)
    before = {p.name for p in work.iterdir()}
    try:
        extract_bundle(path, work / "out")
    except ProtocolError:
        _assert_nothing_left(work, before)
        return
    for p in (work / "out").rglob("*"):  # accepted: only regular files and directories
        assert p.is_dir() or (p.is_file() and not p.is_symlink())
    import shutil

    shutil.rmtree(work / "out")


def _mutate(rng: random.Random, data: bytes, span: int) -> bytes:
    """One to three byte changes, insertions or deletions within the first ``span`` bytes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(min(span, len(buf)))
        roll = rng.random()
        if roll < 0.6:
            buf[pos] = rng.randrange(256)
        elif roll < 0.8:
            del buf[pos : pos + rng.randint(1, 16)]
        else:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def test_ten_thousand_mutated_bundle_headers(tmp_path: Path, bundle: Path) -> None:
    """Mutations of the magic, length and manifest: read_manifest raises only BundleError."""
    data = bundle.read_bytes()
    header_end = 12 + int.from_bytes(data[8:12], "big")
    rng = random.Random(11)
    outcomes = {"refused": 0, "accepted": 0}
    for _ in range(10_000):
        mutated = _mutate(rng, data, header_end)
        try:
            read_manifest_from(io.BytesIO(mutated), len(mutated))
            outcomes["accepted"] += 1
        except BundleError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 9_000  # nearly every header mutation is caught before any file is read


def test_ten_thousand_random_byte_strings_after_the_magic() -> None:
    rng = random.Random(13)
    for _ in range(10_000):
        data = MAGIC + rng.randbytes(rng.randint(0, 200))
        with pytest.raises(BundleError):
            read_manifest_from(io.BytesIO(data), len(data))


def test_two_hundred_mutated_bundles_extract_or_leave_nothing(tmp_path: Path, bundle: Path) -> None:
    data = bundle.read_bytes()
    rng = random.Random(7)
    work = tmp_path / "work"
    work.mkdir()
    for _ in range(200):
        _try_extract(_mutate(rng, data, len(data)), work)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix_len=st.integers(0, 64), tail=st.binary(max_size=300))
def test_hypothesis_garbage_after_a_valid_prefix(
    tmp_path_factory: pytest.TempPathFactory, prefix_len: int, tail: bytes
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    header = (
        b'{"files":[{"path":"a.txt","sha256":"'
        + b"0" * 64
        + b'","size":3}],"format":1,"kind":"lora","meta":{}}'
    )
    valid_prefix = MAGIC + len(header).to_bytes(4, "big") + header
    _try_extract(valid_prefix[:prefix_len] + tail, work)


def test_caps_limited_to_a_task_budget(bundle: Path) -> None:
    total = read_manifest(bundle).total_bytes
    caps = BundleCaps().limited_to(total)
    assert caps.max_total_bytes == total and caps.max_file_bytes == total
    assert read_manifest(bundle, caps)
    with pytest.raises(BundleError, match="more than the cap"):
        read_manifest(bundle, BundleCaps().limited_to(total - 1))
