"""Pick the device and the numerics that help on it: bf16 autocast and channels_last on CUDA."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from kdrun.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    compile: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move a model to the device, in the memory layout its inputs will have."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def describe(self) -> str:
        precision = "bf16 autocast" if self.autocast_dtype is torch.bfloat16 else "fp32"
        layout = ", channels_last" if self.channels_last else ""
        compiled = ", torch.compile" if self.compile else ""
        threads = torch.get_num_threads()
        return f"{self.device} ({precision}{layout}{compiled}, {threads} CPU threads)"


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return kind == "cpu"


def resolve_runtime(cfg: DictConfig) -> Runtime:
    """Resolve `device.type=auto` to the best device present and apply the thread count."""
    kind = cfg.type
    if kind == "auto":
        kind = next(k for k in ("cuda", "mps", "cpu") if _available(k))
    elif not _available(kind):
        raise ConfigError(
            f"device.type={kind} is not available on this machine; use device=auto or device=cpu."
        )
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = torch.device(kind)
    bf16_ok = kind == "cuda" and torch.cuda.is_bf16_supported()
    if cfg.precision == "bf16" and not (bf16_ok or kind == "cpu"):
        raise ConfigError(f"device.precision=bf16 is not supported on {kind}; use auto or fp32.")
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and bf16_ok)
    channels_last = str(cfg.channels_last).lower()
    use_cl = channels_last == "true" or (channels_last == "auto" and kind == "cuda")
    if kind == "cuda":
        torch.backends.cudnn.benchmark = True
    return Runtime(device, torch.bfloat16 if use_bf16 else None, use_cl, bool(cfg.compile))
