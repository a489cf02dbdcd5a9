"""Shared helpers: timing, a CIFAR-sized in-memory data set, a ratio line with its target."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from kdrun.data.augment import Normalize
from kdrun.runtime.device import Runtime


def cpu_runtime() -> Runtime:
    return Runtime(torch.device("cpu"), None, False)


def cifar_sized(n: int = 10_000, classes: int = 10, seed: int = 0):
    """Random uint8 images and labels: throughput does not depend on the pixels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return images, labels, Normalize(images, torch.device("cpu"))


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Best of `repeat` wall-clock runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def report(name: str, ratio: float, target: str, ok: bool, detail: str) -> None:
    status = "OK  " if ok else "MISS"
    print(f"[{status}] {name}: ratio {ratio:.3f} (target {target}) — {detail}", flush=True)
