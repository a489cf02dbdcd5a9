"""What a model costs to deploy: parameters, MACs per image, the size of its saved weights, CPU
latency at batch 1 on one thread, and throughput at batch 256.

PyTorch's own counters: `torch.utils.flop_counter.FlopCounterMode` counts the FLOPs of every
matmul and convolution from the shapes the forward pass dispatches (a MAC is two FLOPs; norms,
activations and pooling are not counted, as in the usual MAC tables), and the timings are short
`time.perf_counter` loops bounded in repetitions and seconds, so a measurement costs well under
a second for the zoo's CIFAR models.
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LATENCY_WARMUP = 3  # batch-1 passes before timing: allocator and kernel selection settle
LATENCY_REPS = 25  # at most this many timed batch-1 passes ...
LATENCY_BUDGET_S = 0.1  # ... or this many seconds, whichever comes first (at least 5 passes)
THROUGHPUT_BATCH = 256
THROUGHPUT_REPS = 3  # timed batch-256 passes (the batch-1 warm-up chose the kernels) ...
THROUGHPUT_BUDGET_S = 0.3  # ... or this many seconds, whichever comes first (at least one)
MB = 1e6  # size_mb is in megabytes (10^6 bytes)
# Fields read off a clock (cost, vs_teacher, export): two runs of one config may differ in these
CLOCK_FIELDS = (
    "latency_ms",
    "throughput",
    "latency_ratio",
    "throughput_ratio",
    "onnxruntime_latency_ms",
)


def count_params(model: nn.Module) -> int:
    """Every parameter element (trainable or not); buffers such as BN statistics excluded."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one image (FLOPs / 2 of conv and matmul)."""
    x = torch.zeros(1, channels, image_size, image_size)
    with torch.no_grad(), _eval(model), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops()) // 2


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the model's state dict as `torch.save` writes it (what student.pt holds)."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def timed_median(
    call: Callable[[], object], warmup: int, reps: int, budget_s: float, min_reps: int = 1
) -> float:
    """Median seconds of `call` over at most `reps` timed calls or `budget_s` seconds (at least
    `min_reps`), after `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    spent = 0.0
    while len(times) < reps and (spent < budget_s or len(times) < min_reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times)


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run the block on `n` intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def latency_ms(model: nn.Module, image_size: int) -> float:
    """Median CPU latency of one image on one thread, after warm-up, in milliseconds."""
    x = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad(), _eval(model), cpu_threads(1):
        seconds = timed_median(
            lambda: model(x), LATENCY_WARMUP, LATENCY_REPS, LATENCY_BUDGET_S, min_reps=5
        )
    return 1000.0 * seconds


def throughput(model: nn.Module, image_size: int, batch: int = THROUGHPUT_BATCH) -> float:
    """Images per second at batch `batch` on the CPU threads the process uses."""
    x = torch.randn(batch, 3, image_size, image_size)
    with torch.no_grad(), _eval(model):
        seconds = timed_median(lambda: model(x), 0, THROUGHPUT_REPS, THROUGHPUT_BUDGET_S)
    return batch / seconds


def model_cost(model: nn.Module, image_size: int) -> dict[str, float | int]:
    """All five figures for a CPU model (its weights do not change them)."""
    model = model.cpu()
    figures = {
        "params": count_params(model),
        "macs": count_macs(model, image_size),
        "size_mb": state_dict_bytes(model) / MB,
        "latency_ms": latency_ms(model, image_size),
        "throughput": throughput(model, image_size),
        "throughput_batch": THROUGHPUT_BATCH,
        "throughput_threads": torch.get_num_threads(),
    }
    for key, value in figures.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"cost measurement {key}={value} is not a finite non-negative number")
    return figures


def ratios(teacher: dict, student: dict) -> dict[str, float | None]:
    """How many times fewer parameters and MACs, and how many times faster, the student is."""

    def ratio(key: str, invert: bool = False) -> float | None:
        t, s = teacher.get(key), student.get(key)
        if not t or not s:
            return None
        return s / t if invert else t / s

    return {
        "params": ratio("params"),
        "macs": ratio("macs"),
        "latency": ratio("latency_ms"),
        "throughput": ratio("throughput", invert=True),
    }


def without_clocks(metrics: dict) -> dict:
    """A copy of a run's metrics without the timed cost fields, so two runs compare on what
    they computed (determinism, chaos and resume checks)."""
    m = copy.deepcopy(metrics)
    for model in ("teacher", "student", "baseline"):
        for part in ("cost", "vs_teacher", "export"):
            for name in CLOCK_FIELDS:
                ((m.get(model) or {}).get(part) or {}).pop(name, None)
    return m


def cpu_name() -> str:
    """The CPU's model name (latency depends on it): /proc/cpuinfo on Linux, else platform."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
