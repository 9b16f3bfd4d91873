"""Build the tiny pretrained base language model bundled in assets/base-model/.

What it is: a Llama-style causal LM (hidden 192, 4 layers, 4 heads, SiLU-gated MLP 512 wide, tied
embeddings, ~2.6M parameters, fp32 safetensors, ~10 MB) with a byte-level BPE tokenizer (vocab 4096),
both trained from scratch on the Python standard library's own source files (code, comments and
docstrings) found on the building machine, test suites excluded. That text is not an evaluation
set, so fine-tuning on the devnet tasks (GSM8K-style maths) starts from a model that knows
characters, words and structure but not the task.

Licence of the source text: the Python Software Foundation License (PSF-2.0), which permits
redistribution of derived works; see https://docs.python.org/3/license.html.

Rebuild (needs only torch, transformers and tokenizers; no network; ~8 minutes on 2 cores):

    nice -n 10 .venv/bin/python scripts/make_base_model.py [--minutes 8] [--out assets/base-model]

Training runs for a fixed wall-clock budget, with the learning rate scheduled on the elapsed fraction
of that budget (warm-up then cosine), so the result depends on machine speed; the loss reached is
written into assets/base-model/README.md and training_log.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trainer.models import (  # noqa: E402
    BOS_TOKEN,
    EOS_TOKEN,
    PAD_TOKEN,
    build_bpe_tokenizer,
    save_tokenizer,
)

EXCLUDED_PARTS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
VOCAB_SIZE = 4096
HIDDEN, LAYERS, HEADS, INTERMEDIATE = 192, 4, 4, 512
SEQ_LEN, BATCH = 256, 8
MAX_POSITIONS = 1024
TOKENIZER_TEXT_BYTES = 8_000_000
TRAIN_TEXT_BYTES = 24_000_000
SEED = 1234
PEAK_LR = 6e-3


def stdlib_sources() -> list[Path]:
    """The standard library's .py files, sorted, without test suites or installed packages."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in root.rglob("*.py") if not EXCLUDED_PARTS & set(p.relative_to(root).parts)]
    return sorted(files)


def read_corpus(files: list[Path], max_bytes: int, seed: int) -> list[str]:
    """Whole files in a seeded order until `max_bytes` of text."""
    order = list(files)
    random.Random(seed).shuffle(order)
    texts, total = [], 0
    for path in order:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        texts.append(text)
        total += len(text)
        if total >= max_bytes:
            break
    return texts


def lr_at(fraction: float, peak: float, warmup: float = 0.05) -> float:
    """Warm-up then cosine to 10% of peak, on the elapsed fraction of the wall-clock budget."""
    if fraction < warmup:
        return peak * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock training budget")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "base-model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    files = stdlib_sources()
    started = time.monotonic()
    tokenizer = build_bpe_tokenizer(read_corpus(files, TOKENIZER_TEXT_BYTES, SEED), VOCAB_SIZE)
    print(f"tokenizer: {tokenizer.get_vocab_size()} tokens in {time.monotonic() - started:.0f}s", flush=True)

    eos = tokenizer.token_to_id(EOS_TOKEN)
    assert eos is not None, "the tokenizer lost its special tokens"
    ids: list[int] = []
    for text in read_corpus(files, TRAIN_TEXT_BYTES, SEED + 1):
        ids.extend(tokenizer.encode(text).ids)
        ids.append(eos)
    stream = torch.tensor(ids, dtype=torch.long)
    n_seq = len(stream) // SEQ_LEN
    sequences = stream[: n_seq * SEQ_LEN].view(n_seq, SEQ_LEN)  # [n_seq, SEQ_LEN]
    held_out = sequences[-32:]
    sequences = sequences[:-32]
    print(f"corpus: {len(files)} files, {len(ids)} tokens, {n_seq} sequences", flush=True)

    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=HIDDEN,
        intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.token_to_id(BOS_TOKEN),
        eos_token_id=eos,
        pad_token_id=tokenizer.token_to_id(PAD_TOKEN),
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.1, betas=(0.9, 0.95))
    budget_s = args.minutes * 60
    train_start = time.monotonic()
    step, losses = 0, []
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    while (elapsed := time.monotonic() - train_start) < budget_s:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(elapsed / budget_s, peak=PEAK_LR)
        batch = sequences[torch.randint(len(sequences), (BATCH,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            recent = sum(losses[-20:]) / 20
            print(f"step {step} loss {recent:.3f} elapsed {elapsed:.0f}s", flush=True)

    model.eval()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        held_loss = sum(model(input_ids=s[None], labels=s[None]).loss.item() for s in held_out) / len(
            held_out
        )
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out))
    save_tokenizer(tokenizer, args.out, MAX_POSITIONS)
    log = {
        "parameters": n_params,
        "steps": step,
        "tokens_seen": step * BATCH * SEQ_LEN,
        "train_loss_first_20": sum(losses[:20]) / max(1, len(losses[:20])),
        "train_loss_last_20": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "held_out_loss": held_loss,
        "train_seconds": time.monotonic() - train_start,
        "python": sys.version.split()[0],
        "source_files": len(files),
        "corpus_tokens": len(ids),
        # The 2 cores were shared: a high load average explains a short run.
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    (args.out / "training_log.json").write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    write_readme(args.out, log)
    print(json.dumps(log), flush=True)


def write_readme(out: Path, log: dict[str, float | int | str]) -> None:
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    text = f"""# Bundled base model: tiny Llama trained on the Python standard library

A small pretrained causal language model so that fine-tuning on the devnet is meaningful offline.

- Architecture: Llama-style (RoPE, RMSNorm, SiLU-gated MLP), hidden {HIDDEN}, {LAYERS} layers,
  {HEADS} heads, MLP {INTERMEDIATE}, tied embeddings, {log["parameters"]:,} parameters, fp32 safetensors.
- Tokenizer: byte-level BPE, vocabulary {VOCAB_SIZE} (3 special tokens: `{BOS_TOKEN}`, `{EOS_TOKEN}`,
  `{PAD_TOKEN}`), trained with the `tokenizers` package.
- Training text: the .py files of the Python {log["python"]} standard library on the building machine
  ({log["source_files"]} files; test suites excluded), {log["corpus_tokens"]:,} tokens. Not an evaluation set.
- Training: AdamW (peak lr {PEAK_LR}, weight decay 0.1), warm-up then cosine over a wall-clock budget,
  {log["steps"]} steps of {BATCH}x{SEQ_LEN} tokens ({log["tokens_seen"]:,} tokens seen) in
  {float(log["train_seconds"]):.0f} s on CPU (nice 10; 1-minute load average at the end
  {float(log["load_average_1min_at_end"]):.1f} on the shared 2 cores, so few steps ran).
- Loss (nats/token): first 20 steps {float(log["train_loss_first_20"]):.3f}, last 20 steps
  {float(log["train_loss_last_20"]):.3f}, held-out sequences {float(log["held_out_loss"]):.3f}.
- Size on disk: {size / 1e6:.1f} MB in total.

Load with no network: `AutoModelForCausalLM.from_pretrained("assets/base-model")` and
`AutoTokenizer.from_pretrained("assets/base-model")`.

Rebuild: `nice -n 10 .venv/bin/python scripts/make_base_model.py` (about 8 minutes on 2 cores; the
result depends on machine speed because the budget is wall-clock time).

Licence: the training text is the Python standard library, under the Python Software Foundation
License (PSF-2.0); the weights are a derived work distributed under the same terms as this repository.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
