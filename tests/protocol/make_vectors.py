"""Write tests/protocol/vectors/v<N>.json: one signed, encoded message per type of protocol version N.

Types added later to a released version get their own file: ``--types A,B --suffix NAME`` writes
v<N>_NAME.json with only those types (v1_diloco.json: DilocoRound, DilocoContribution). A new
version of a type is named ``TYPE:VERSION`` (v1_receiptproof_v2.json: ``--types ReceiptProof:2
--suffix receiptproof_v2``).

Run once when a protocol version is released (``.venv/bin/python tests/protocol/make_vectors.py``) and
commit the file; never regenerate an old one: it is the proof that released messages stay decodable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from protocol_samples import KeySigner, domain, samples  # noqa: E402

from protocol.encoding import encode, message_id  # noqa: E402
from protocol.messages import PROTOCOL_VERSION  # noqa: E402
from protocol.signing import sign, signing_digest  # noqa: E402


def main() -> None:
    signer, other = KeySigner(b"\x01" * 32), KeySigner(b"\x02" * 32)
    net = domain()
    vectors = []
    only = _only_types()
    for msg in samples(signer.address, other.address).values():
        if only and msg.TYPE not in only and f"{msg.TYPE}:{msg.VERSION}" not in only:
            continue
        data = encode(sign(msg, net, signer))
        vectors.append({
            "type": msg.TYPE,
            "version": msg.VERSION,
            "encoded": data.decode("utf-8"),
            "signer": signer.address,
            "message_id": message_id(data).hex(),
            "struct_hash": msg.struct_hash().hex(),
            "digest": signing_digest(msg, net).hex(),
        })  # fmt: skip
    doc = {
        "protocol_version": PROTOCOL_VERSION,
        "domain": {**net.to_json(), "salt": "0x" + net.salt.hex()},
        "vectors": vectors,
    }
    suffix = _suffix()
    out = HERE / "vectors" / (f"v{PROTOCOL_VERSION}_{suffix}.json" if suffix else f"v{PROTOCOL_VERSION}.json")
    if out.exists() and "--force" not in sys.argv:
        raise SystemExit(f"{out} exists: released vectors are never regenerated (pass --force if unreleased)")
    out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(vectors)} vectors to {out}")


def _arg(name: str) -> str:
    for i, arg in enumerate(sys.argv[:-1]):
        if arg == name:
            return sys.argv[i + 1]
    return ""


def _only_types() -> set[str]:
    """``--types A,B:2``: vectors for these types (or ``TYPE:VERSION``s) only."""
    return {t for t in _arg("--types").split(",") if t}


def _suffix() -> str:
    """``--suffix NAME``: write v<N>_NAME.json (types added later; v<N>.json stays)."""
    return _arg("--suffix")


if __name__ == "__main__":
    main()
