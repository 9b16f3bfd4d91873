"""What this machine can do: a hardware profile, a short throughput benchmark and a fit check for a task.

`detect_hardware(gpus=False)` is cheap and never imports torch (the GUI process calls it); with
`gpus=True` it asks NVML (nvidia-ml-py, optional) and, lazily, torch for GPUs and Apple MPS.
`benchmark()` (~2 s, imports torch) measures matmul GFLOP/s and LoRA training tokens/s on a tiny
model; `fit_check()` estimates a task's memory (weights + optimizer + activations at the chosen
micro-batch) and time on this machine from those measurements.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# Flags worth knowing for training/inference kernels (x86 and ARM names as the kernel reports them).
VECTOR_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_total_bytes: int
    memory_free_bytes: int | None = None
    compute_capability: str | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    utilisation_pct: float | None = None


@dataclass
class BatteryInfo:
    percent: float
    plugged_in: bool


@dataclass
class HardwareProfile:
    cpu_model: str
    physical_cores: int
    logical_cores: int
    vector_extensions: list[str]
    ram_total_bytes: int
    ram_available_bytes: int
    os: str
    machine: str
    gpus: list[GpuInfo] = field(default_factory=list)
    mps_available: bool = False
    battery: BatteryInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareProfile:
        data = dict(data)
        data["gpus"] = [GpuInfo(**g) for g in data.get("gpus", [])]
        data["battery"] = BatteryInfo(**data["battery"]) if data.get("battery") else None
        return cls(**data)

    @property
    def best_device(self) -> str:
        if self.gpus:
            return "cuda"
        return "mps" if self.mps_available else "cpu"


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo where it exists."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", set()
    model = re.search(r"^(model name|Model|cpu model)\s*:\s*(.+)$", text, re.MULTILINE)
    flags = re.search(r"^(flags|Features)\s*:\s*(.+)$", text, re.MULTILINE)
    return (model.group(2).strip() if model else ""), set(flags.group(2).split() if flags else ())


# x86 instructions that compute bf16 dot products natively (oneDNN uses them under CPU autocast).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16). On such a CPU a bf16
    autocast training step of the bundled model takes ~0.7x the time of fp32 at the same loss
    (docs/TRAINER.md); without them bf16 is emulated and slower than fp32. The environment variable
    MAGNET_CPU_BF16=0 turns CPU bf16 off (fp32 everywhere on the CPU)."""
    if os.environ.get("MAGNET_CPU_BF16", "").strip() == "0":
        return False
    return bool(NATIVE_BF16_FLAGS & _cpuinfo()[1])


def _vector_extensions(flags: set[str]) -> list[str]:
    found = [f for f in VECTOR_FLAGS if f in flags]
    if not found and platform.machine().lower() in ("arm64", "aarch64"):
        found = ["neon"]  # every ARMv8 core has NEON/ASIMD; macOS has no /proc/cpuinfo
    return found


def _battery() -> BatteryInfo | None:
    try:
        state = psutil.sensors_battery()
    except (AttributeError, NotImplementedError, OSError):
        return None
    if state is None:
        return None
    return BatteryInfo(percent=float(state.percent), plugged_in=bool(state.power_plugged))


def detect_hardware(gpus: bool = False) -> HardwareProfile:
    """The machine's profile; with `gpus` also GPUs (NVML, then torch) and MPS (may import torch)."""
    model, flags = _cpuinfo()
    memory = psutil.virtual_memory()
    profile = HardwareProfile(
        cpu_model=model or platform.processor() or platform.machine(),
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        logical_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        vector_extensions=_vector_extensions(flags),
        ram_total_bytes=int(memory.total),
        ram_available_bytes=int(memory.available),
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        battery=_battery(),
    )
    if gpus:
        profile.gpus = nvml_gpus() or _torch_gpus()
        _add_compute_capability(profile.gpus)
        profile.mps_available = _mps_available()
    return profile


def nvml_gpus() -> list[GpuInfo]:
    """GPUs with live sensors from NVML; empty when nvidia-ml-py or the driver is absent."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError subclasses: no driver, no device
        return []
    try:
        return [_nvml_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: Any, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    memory = pynvml.nvmlDeviceGetMemoryInfo(handle)

    def sensor(read: Any) -> float | None:
        try:
            return float(read())
        except Exception:  # a sensor a consumer card does not expose
            return None

    return GpuInfo(
        index=index,
        name=name.decode() if isinstance(name, bytes) else str(name),
        memory_total_bytes=int(memory.total),
        memory_free_bytes=int(memory.free),
        temperature_c=sensor(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)),
        power_w=sensor(lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0),
        utilisation_pct=sensor(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu),
    )


def _torch_gpus() -> list[GpuInfo]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, _total = torch.cuda.mem_get_info(i)
        out.append(GpuInfo(index=i, name=props.name, memory_total_bytes=int(props.total_memory),
                           memory_free_bytes=int(free)))  # fmt: skip
    return out


def _add_compute_capability(gpus: list[GpuInfo]) -> None:
    if not gpus:
        return
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        return
    for gpu in gpus:
        if gpu.index < torch.cuda.device_count():
            major, minor = torch.cuda.get_device_capability(gpu.index)
            gpu.compute_capability = f"{major}.{minor}"


def _mps_available() -> bool:
    if platform.system() != "Darwin":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.backends.mps.is_available())


@dataclass
class Throughput:
    """Measured speed of this machine on `device` (from `benchmark`)."""

    device: str
    matmul_gflops: float
    train_tokens_per_s: float
    # Useful FLOP/s of LoRA training (4 x params x tokens/s) as a fraction of matmul FLOP/s on the
    # benchmark model; `fit.estimate_seconds` scales larger models with it.
    train_efficiency: float
    bench_params: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _matmul_gflops(torch: Any, device: str, dtype: Any, seconds: float) -> float:
    import time

    n = 1024 if device == "cpu" else 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up (kernel selection, allocation)
    _sync(torch, device)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        torch.matmul(a, b)
        count += 1
        if device != "cpu" and count % 20 == 0:
            _sync(torch, device)
    _sync(torch, device)
    elapsed = time.perf_counter() - started
    return 2 * n**3 * count / elapsed / 1e9


def _sync(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def benchmark(device: str = "auto", seconds: float = 2.0, threads: int | None = None) -> Throughput:
    """~`seconds` of measurement: matmul GFLOP/s, then LoRA training tokens/s on a tiny Llama."""
    import time

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.models import pick_device, pick_dtype

    if threads is not None:
        torch.set_num_threads(threads)
    device = pick_device(device)
    dtype = pick_dtype(device)
    gflops = _matmul_gflops(torch, device, dtype, seconds * 0.4)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    model: Any = LlamaForCausalLM(config)
    model = model.to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = torch.randint(0, 2048, (2, 64), device=device)  # [micro-batch, seq]
    tokens, started = 0, None
    deadline = time.perf_counter() + seconds * 0.6
    steps = 0
    while time.perf_counter() < deadline or steps < 3:
        model(input_ids=batch, labels=batch, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps += 1
        if steps == 1:  # the first step pays one-off costs
            _sync(torch, device)
            started = time.perf_counter()
        else:
            tokens += batch.numel()
    _sync(torch, device)
    assert started is not None
    tokens_per_s = tokens / (time.perf_counter() - started)
    efficiency = 4 * n_params * tokens_per_s / (gflops * 1e9)
    return Throughput(device, gflops, tokens_per_s, efficiency, n_params)


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.hardware [--seconds S]``: print this machine's usable training speed
    (GFLOP/s: matmul speed times the measured training efficiency) on one line. The miner runs it
    once as a child process, so that the node itself never imports torch."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainer.hardware")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of measurement")
    args = parser.parse_args(argv)
    t = benchmark(seconds=args.seconds)
    print(t.matmul_gflops * max(t.train_efficiency, 1e-3), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
