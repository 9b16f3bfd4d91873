"""Write assets/datasets/hh_rlhf_subset.jsonl.gz: the devnet's `dpo` task data.

    python scripts/make_hh_subset.py [--source ../shared/datasets/hh_rlhf_harmless_test.jsonl.gz]

400 rows of Anthropic's HH-RLHF harmless-base test split (MIT, LICENSE.hh_rlhf beside the output),
unchanged, drawn with random.Random(7) among the rows that the trainer's `dpo` data contract accepts
(chosen and rejected share the dialogue up to the last "Assistant:" turn) and whose dialogue is at
most 1,200 characters (the devnet's tiny model trains on 256-token windows). Written with a fixed
gzip mtime so that the file is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.data import DataError, preference_example  # noqa: E402

ROWS, SEED, MAX_CHARS = 400, 7, 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = REPO.parent / "shared" / "datasets" / "hh_rlhf_harmless_test.jsonl.gz"
    parser.add_argument("--source", type=Path, default=shared)
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "datasets" / "hh_rlhf_subset.jsonl.gz")
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    usable = []
    for i, row in enumerate(rows):
        if len(row["chosen"]) > MAX_CHARS or len(row["rejected"]) > MAX_CHARS:
            continue
        try:
            preference_example(row, f"row {i}")
        except DataError:
            continue
        usable.append(i)
    picked = sorted(random.Random(SEED).sample(usable, ROWS))
    body = "".join(json.dumps(rows[i], ensure_ascii=False) + "\n" for i in picked).encode("utf-8")
    with args.out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(body)
    print(f"{args.out}: {ROWS} of {len(usable)} usable rows ({len(rows)} in the source)")


if __name__ == "__main__":
    main()
