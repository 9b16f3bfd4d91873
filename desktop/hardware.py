"""Live hardware readings for the Mine screen's card: psutil and trainer.hardware's cheap parts
(NVML for GPUs when nvidia-ml-py and a driver are there). Never imports torch. Read on a pool
thread (sensors can take tens of milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class GpuReading:
    name: str
    use_pct: float | None
    vram_used_mb: int
    vram_total_mb: int
    temperature_c: float | None


@dataclass(frozen=True)
class HardwareReading:
    cpu_pct: float
    cores: int
    ram_used_mb: int
    ram_total_mb: int
    cpu_temperature_c: float | None
    battery: str  # "", "on battery, 54%", "plugged in, 100%"
    gpus: list[GpuReading] = field(default_factory=list)

    def lines(self) -> list[str]:
        cpu = f"CPU: {self.cpu_pct:.0f}% of {self.cores} cores"
        if self.cpu_temperature_c is not None:
            cpu += f", {self.cpu_temperature_c:.0f} °C"
        lines = [cpu, f"RAM: {self.ram_used_mb / 1024:.1f} of {self.ram_total_mb / 1024:.1f} GiB"]
        for g in self.gpus:
            use = f"{g.use_pct:.0f}%" if g.use_pct is not None else "use unknown"
            temp = f", {g.temperature_c:.0f} °C" if g.temperature_c is not None else ""
            lines.append(f"GPU {g.name}: {use}, VRAM {g.vram_used_mb} of {g.vram_total_mb} MiB{temp}")
        if not self.gpus:
            lines.append("GPU: none found (training runs on the CPU)")
        if self.battery:
            lines.append(f"Battery: {self.battery}")
        return lines


def read_hardware() -> HardwareReading:
    memory = psutil.virtual_memory()
    return HardwareReading(
        cpu_pct=psutil.cpu_percent(interval=None),
        cores=psutil.cpu_count(logical=True) or 1,
        ram_used_mb=int(memory.total - memory.available) >> 20,
        ram_total_mb=int(memory.total) >> 20,
        cpu_temperature_c=_cpu_temperature(),
        battery=_battery(),
        gpus=_gpus(),
    )


def _cpu_temperature() -> float | None:
    read = getattr(psutil, "sensors_temperatures", None)
    try:
        sensors = read() if read else {}
    except OSError:
        return None
    for name in ("coretemp", "k10temp", "cpu_thermal", "acpitz"):
        if sensors.get(name):
            return float(max(s.current for s in sensors[name]))
    return None


def _battery() -> str:
    read = getattr(psutil, "sensors_battery", None)
    state = read() if read else None
    if state is None:
        return ""
    return f"{'plugged in' if state.power_plugged else 'on battery'}, {state.percent:.0f}%"


def _gpus() -> list[GpuReading]:
    from trainer import hardware  # psutil and the standard library only at import time

    found = hardware.nvml_gpus()  # the NVML part only: the torch fallback is not cheap
    return [
        GpuReading(
            name=g.name,
            use_pct=g.utilisation_pct,
            vram_used_mb=(g.memory_total_bytes - (g.memory_free_bytes or 0)) >> 20,
            vram_total_mb=g.memory_total_bytes >> 20,
            temperature_c=g.temperature_c,
        )
        for g in found
    ]
