"""Which device a job runs on, and in which precision."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from fastnst.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")


def pick_device(name: str = "auto", key: str = "device") -> torch.device:
    """``auto``: a CUDA GPU, else an Apple GPU (MPS), else the CPU. A named device that is not
    there is a :class:`ConfigError` about ``key``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICES:
        raise ConfigError(key, f"must be one of {DEVICES}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(key, "cuda asked for, but no CUDA device is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(key, "mps asked for, but no Apple GPU (MPS) is available")
    return torch.device(name)


def autocast_dtype(
    precision: str, device: torch.device, key: str = "precision"
) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None for fp32); a
    :class:`ConfigError` about ``key`` where the device cannot do it."""
    if precision not in PRECISIONS:
        raise ConfigError(key, f"must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type not in ("cuda", "mps"):
        raise ConfigError(key, "fp16 needs CUDA or MPS; use bf16 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(key, "bf16: this GPU has no bfloat16; use fp16")
    return torch.bfloat16 if precision == "bf16" else torch.float16


# CPU features that run bf16 matrix products natively (AVX512-BF16 on AMD Zen 4 and Intel
# Cooper Lake on; AMX on Intel Sapphire Rapids on). Without them bf16 is emulated: slower.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_units() -> list[str]:
    """The bf16 units this CPU reports (Linux ``/proc/cpuinfo``; elsewhere none known)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    flags = set(re.findall(r"[a-z0-9_]+", text.partition("flags")[2].partition("\n")[0]))
    return [flag for flag in BF16_CPU_FLAGS if flag in flags]


def training_precision(precision: object, accelerator: object = "auto") -> tuple[str, str]:
    """Lightning's ``precision`` for ``trainer.precision``, and why: ``auto`` is bf16 autocast
    (``bf16-mixed``; Grams and losses stay fp32) on a CUDA GPU with bf16 and on a CPU with
    bf16 units, where it was measured faster at the same held-out losses (see
    docs/experiments/recipe.md), and fp32 (``32-true``) everywhere else. Other values pass
    through unchanged."""
    if str(precision) != "auto":
        return str(precision), "as set"
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "auto: this GPU has bf16"
        return "32-true", "auto: this GPU has no bf16"
    if accelerator in ("auto", "cpu") and not (
        accelerator == "auto" and torch.backends.mps.is_available()
    ):
        units = cpu_bf16_units()
        if units:
            return "bf16-mixed", f"auto: this CPU has bf16 units ({', '.join(units)})"
        return "32-true", "auto: this CPU has no bf16 units"
    return "32-true", f"auto: fp32 on {accelerator}"
