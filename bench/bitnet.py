"""BitNet b1.58 artifacts: packed size against fp16, and CPU decode speed of the ternary model.

Trains a llama.cpp-compatible ternary model for a few steps with the `bitnet` recipe (widths multiples
of 256), then measures in the same run:
- sizes: the packed safetensors artifact, the same model as fp16 safetensors, GGUF TQ2_0 / TQ1_0 /
  F16, and the decoder linear weights alone (2 bits against 16 bits per weight);
- greedy decode tokens/s (KV cache, fixed length, median of repeats, methods interleaved so load
  changes hit all alike): llama.cpp TQ2_0 / TQ1_0 against F16 when llama-cpp-python is installed;
  always torch: the unpacked ternary model in fp32 (baseline) and fp16, and transformers' packed
  BitLinear (unpacks 2-bit weights every step and quantises activations to int8).

    .venv/bin/python bench/bitnet.py [--hidden 512] [--intermediate 1536] [--layers 4] [--tokens 32]
                                     [--repeats 3] [--threads 2]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from trainer.bitnet.gguf_export import export_gguf  # noqa: E402
from trainer.bitnet.model import load_artifact  # noqa: E402
from trainer.bitnet.packing import WEIGHTS_FILE, dense_state_dict  # noqa: E402
from trainer.models import tiny_llama  # noqa: E402
from trainer.recipes import NullReporter, TrainJob, get_recipe  # noqa: E402

PROMPT = "def add(a, b):\n    return"


def train_artifact(root: Path, args: argparse.Namespace) -> Path:
    base = tiny_llama(
        root / "base",
        hidden=args.hidden,
        intermediate=args.intermediate,
        layers=args.layers,
        heads=args.hidden // 64,
    )
    rows = [{"text": f"def add_{i}(a, b):\n    return a + b + {i}\n"} for i in range(64)]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    job = TrainJob(
        kind="bitnet",
        base_model_dir=str(base),
        train_file=str(data),
        output_dir=str(root / "artifact"),
        hparams={"architecture": "llama_cpp", "init": "scratch", "seq_len": 64, "batch_size": 4},
        max_steps=args.train_steps,
        device="cpu",
        threads=args.threads,
    )
    return Path(get_recipe("bitnet").train(job, NullReporter()).artifact_dir)


def dense_model(artifact: Path, dtype: torch.dtype) -> Any:
    """The same ternary model as plain linear layers holding s * T, in `dtype`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = json.loads((artifact / "config.json").read_text())
    config.pop("quantization_config")
    model: Any = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(dense_state_dict(artifact / WEIGHTS_FILE), strict=False)
    model.tie_weights()
    return model.to(dtype).eval()


def linear_weight_count(artifact: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(artifact / WEIGHTS_FILE), framework="pt") as weights:
        return sum(
            weights.get_slice(n).get_shape()[0] * 4 * weights.get_slice(n).get_shape()[1]
            for n in weights.keys()  # noqa: SIM118 (safe_open has no __iter__)
            if weights.get_slice(n).get_dtype() == "U8"
        )


def sizes(artifact: Path, root: Path) -> dict[str, Any]:
    fp16_dir = root / "fp16"
    dense_model(artifact, torch.float16).save_pretrained(str(fp16_dir), safe_serialization=True)
    ggufs = {q: export_gguf(artifact, root / f"model-{q}.gguf", q) for q in ("TQ2_0", "TQ1_0", "F16")}
    n_linear = linear_weight_count(artifact)
    out: dict[str, Any] = {
        "decoder_linear_weights": n_linear,
        "linear_bytes_packed_2bit": n_linear // 4,
        "linear_bytes_fp16": n_linear * 2,
        "artifact_safetensors_bytes": (artifact / WEIGHTS_FILE).stat().st_size,
        "fp16_safetensors_bytes": (fp16_dir / "model.safetensors").stat().st_size,
    }
    out["linear_ratio_fp16_over_packed"] = round(
        out["linear_bytes_fp16"] / out["linear_bytes_packed_2bit"], 2
    )
    out["artifact_ratio_fp16_over_packed"] = round(
        out["fp16_safetensors_bytes"] / out["artifact_safetensors_bytes"], 2
    )
    out.update({f"gguf_{q}_bytes": p.stat().st_size for q, p in ggufs.items()})
    out["gguf_tensor_types"] = {q: gguf_tensor_types(p) for q, p in ggufs.items()}
    out["paths"] = {q: str(p) for q, p in ggufs.items()}
    return out


def gguf_tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each type the file holds, read back with gguf's own reader."""
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def torch_decoder(model: Any, prompt: list[int], tokens: int) -> Callable[[], int]:
    ids = torch.tensor([prompt])

    def run() -> int:
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, use_cache=True
            )
        return int(out.shape[1] - ids.shape[1])

    return run


def llama_cpp_decoder(path: str, prompt: list[int], tokens: int, threads: int) -> Callable[[], int]:
    import llama_cpp  # optional extra

    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=threads, verbose=False)

    def run() -> int:
        llm.reset()
        produced = 0
        for _ in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            produced += 1
            if produced == tokens:
                break
        return produced

    return run


def measure(decoders: dict[str, Callable[[], int]], repeats: int) -> dict[str, float]:
    """Median tokens/s per decoder; one warm-up call each, then interleaved repeats."""
    for run in decoders.values():
        run()
    samples: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(repeats):
        for name, run in decoders.items():
            start = time.perf_counter()
            produced = run()
            samples[name].append(produced / (time.perf_counter() - start))
    return {name: round(statistics.median(values), 1) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-bitnet-") as tmp:
        root = Path(tmp)
        artifact = train_artifact(root, args)
        size = sizes(artifact, root)
        from transformers import AutoTokenizer

        prompt = AutoTokenizer.from_pretrained(str(artifact)).encode(PROMPT, add_special_tokens=False)
        decoders = {
            "torch_fp32_unpacked_ternary": torch_decoder(
                dense_model(artifact, torch.float32), prompt, args.tokens
            ),
            "torch_fp16_unpacked_ternary": torch_decoder(
                dense_model(artifact, torch.float16), prompt, args.tokens
            ),
            "torch_transformers_packed_bitlinear": torch_decoder(
                load_artifact(artifact, "cpu"), prompt, args.tokens
            ),
        }
        llama_cpp: dict[str, Any] = {"available": importlib.util.find_spec("llama_cpp") is not None}
        if llama_cpp["available"]:
            for quant in ("TQ2_0", "TQ1_0", "F16"):
                path = size["paths"][quant]
                decoders[f"llama_cpp_{quant}"] = llama_cpp_decoder(path, prompt, args.tokens, args.threads)
        else:
            llama_cpp["reason"] = (
                "llama-cpp-python is not installed (optional extra `magnet[llama]`, ~11 min build); "
                "the GGUF files were written and read back but not decoded; torch figures only"
            )
        speeds = measure(decoders, args.repeats)
        base = speeds["torch_fp32_unpacked_ternary"]
        ratios = {f"{name}_vs_torch_fp32": round(v / base, 3) for name, v in speeds.items()}
        if llama_cpp["available"]:
            ratios["llama_cpp_TQ2_0_vs_F16"] = round(speeds["llama_cpp_TQ2_0"] / speeds["llama_cpp_F16"], 3)
            ratios["llama_cpp_TQ1_0_vs_F16"] = round(speeds["llama_cpp_TQ1_0"] / speeds["llama_cpp_F16"], 3)
        size.pop("paths")
        print(
            json.dumps(
                {
                    "model": {
                        "hidden": args.hidden,
                        "intermediate": args.intermediate,
                        "layers": args.layers,
                        "vocab": json.loads((artifact / "config.json").read_text())["vocab_size"],
                    },
                    "threads": args.threads,
                    "decode_tokens": args.tokens,
                    "repeats": args.repeats,
                    "sizes": size,
                    "llama_cpp": llama_cpp,
                    "decode_tokens_per_s": speeds,
                    "decode_ratios": ratios,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
