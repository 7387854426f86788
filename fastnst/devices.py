"""Which device a job runs on, and in which precision."""

from __future__ import annotations

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
