"""Protocol benchmark: prints one JSON object.

Messages (a Receipt, the commonest signed message): sign, encode, strict decode and verify rates on
one core, each against a baseline measured in the same run (plain ``json.dumps`` / ``json.loads`` of the
same envelope; bare ``eth_account`` signing and recovery of the same typed data), with the ratio.
Encoded size of every message type.

Bundles: write, read_manifest and extract of a bundle holding a safetensors file of ``--bundle-mb``
MiB, against the least work any safe format needs (copy the bytes and sha256 them, measured here).

Run: ``.venv/bin/python bench/protocol.py [--messages N] [--bundle-mb M]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from eth_account import Account
from eth_account.messages import encode_typed_data
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "protocol"))

from protocol_samples import KeySigner, domain, samples

from protocol.bundle import extract_bundle, read_manifest, write_bundle
from protocol.encoding import decode, encode
from protocol.signing import recover_signer, sign, typed_data


def rate(fn: Callable[[], Any], n: int) -> float:
    """Calls per second of ``fn`` over ``n`` calls (best of 3 runs, to dodge noisy neighbours)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def bench_messages(n: int) -> dict[str, Any]:
    signer, other = KeySigner(b"\x01" * 32), KeySigner(b"\x02" * 32)
    net = domain()
    all_samples = samples(signer.address, other.address)
    receipt = all_samples["Receipt"]
    signed = sign(receipt, net, signer)
    data = encode(signed)
    envelope = json.loads(data)
    account = Account.from_key(b"\x01" * 32)
    signable = encode_typed_data(full_message=typed_data(receipt, net))

    ours = {
        "sign_per_s": rate(lambda: sign(receipt, net, signer), n),
        "encode_per_s": rate(lambda: encode(signed), n),
        "decode_per_s": rate(lambda: decode(data), n),
        "decode_and_verify_per_s": rate(lambda: recover_signer(decode(data), net), n),
    }
    baseline = {
        "sign_per_s": rate(
            lambda: account.sign_message(encode_typed_data(full_message=typed_data(receipt, net))), n
        ),
        "encode_per_s": rate(lambda: json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode(), n),
        "decode_per_s": rate(lambda: json.loads(data), n),
        "decode_and_verify_per_s": rate(
            lambda: (json.loads(data), Account.recover_message(signable, signature=signed.signature)), n
        ),
    }
    return {
        "message": "Receipt",
        "calls": n,
        "ours": {k: round(v) for k, v in ours.items()},
        "baseline": {k: round(v) for k, v in baseline.items()},
        "ratio_ours_to_baseline": {k: round(ours[k] / baseline[k], 3) for k in ours},
        "encoded_bytes": {name: len(encode(sign(msg, net, signer))) for name, msg in all_samples.items()},
    }


def bench_bundle(megabytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "model"
        src.mkdir()
        floats = megabytes * (1 << 20) // 4
        save_file({"weight": np.random.default_rng(0).standard_normal(floats, dtype=np.float32)},
                  str(src / "model.safetensors"))  # fmt: skip
        (src / "config.json").write_text('{"hidden_size": 64}')
        size = sum(p.stat().st_size for p in src.iterdir())

        def copy_and_hash() -> None:
            dest = root / f"copy-{time.perf_counter_ns()}"
            dest.mkdir()
            for p in src.iterdir():
                shutil.copyfile(p, dest / p.name)
                hashlib.sha256((dest / p.name).read_bytes()).digest()
            shutil.rmtree(dest)

        def write() -> None:
            write_bundle(src, root / "b.magnet", "bitnet")

        def extract() -> None:
            dest = root / f"x-{time.perf_counter_ns()}"
            extract_bundle(root / "b.magnet", dest)
            shutil.rmtree(dest)

        baseline_s = 1 / rate(copy_and_hash, 1)
        write_s = 1 / rate(write, 1)
        extract_s = 1 / rate(extract, 1)
        manifest_per_s = rate(lambda: read_manifest(root / "b.magnet"), 200)
    mib = size / (1 << 20)
    return {
        "bundle_mib": round(mib, 1),
        "baseline_copy_and_sha256_mib_per_s": round(mib / baseline_s, 1),
        "write_bundle_mib_per_s": round(mib / write_s, 1),
        "extract_bundle_mib_per_s": round(mib / extract_s, 1),
        "ratio_write_to_baseline": round(baseline_s / write_s, 3),
        "ratio_extract_to_baseline": round(baseline_s / extract_s, 3),
        "read_manifest_per_s": round(manifest_per_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000, help="calls per message measurement")
    parser.add_argument(
        "--bundle-mb", type=int, default=64, help="size of the bundle's safetensors file, MiB"
    )
    args = parser.parse_args()
    result = {
        "benchmark": "protocol",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_1m": os.getloadavg()[0],
        },
        "messages": bench_messages(args.messages),
        "bundle": bench_bundle(args.bundle_mb),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
