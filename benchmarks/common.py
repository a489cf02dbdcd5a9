"""Shared helpers: a CIFAR-sized in-memory data set and paired, interleaved measurement.

A ratio is judged by an interval, never by one figure: A and B alternate for several rounds
(A-B, then B-A, ...), so drift on a shared machine lands on both sides, and the target is
checked against a bootstrap 95% interval of the median per-round ratio."""

from __future__ import annotations

import operator
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from kdrun.data.augment import Normalize
from kdrun.runtime.device import Runtime

ROUNDS, WARMUP, RESAMPLES, SEED = 5, 1, 2000, 0
COMPARE = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def cpu_runtime() -> Runtime:
    return Runtime(torch.device("cpu"), None, False)


def cifar_sized(n: int = 10_000, classes: int = 10, seed: int = 0):
    """Random uint8 images and labels: throughput does not depend on the pixels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=gen)
    return images, labels, Normalize(images, torch.device("cpu"))


class Measured(float):
    """Returned by a benchmarked callable that times only part of its own work itself."""


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call, or the Measured seconds it returns."""
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    return float(out) if isinstance(out, Measured) else elapsed


@dataclass(frozen=True)
class Target:
    """A bound the ratio must meet, e.g. Target(">=", 0.95)."""

    op: str
    value: float

    def met(self, x: float) -> bool:
        return COMPARE[self.op](x, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True)
class Summary:
    """The median per-round ratio, its bootstrap 95% interval and its interquartile range."""

    median: float
    low: float
    high: float
    q1: float
    q3: float


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartile (inclusive method: defined for any n >= 1)."""
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summarize(ratios: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> Summary:
    """Median ratio with a percentile-bootstrap 95% interval (fixed seed: the same rounds give
    the same interval) and the IQR."""
    if not ratios:
        raise ValueError("summarize needs at least one round")
    rng = random.Random(seed)
    n = len(ratios)
    medians = sorted(statistics.median(rng.choices(ratios, k=n)) for _ in range(resamples))
    low = medians[int(0.025 * (resamples - 1))]
    high = medians[int(round(0.975 * (resamples - 1)))]
    q1, q3 = quartiles(ratios)
    return Summary(statistics.median(ratios), low, high, q1, q3)


def verdict(summary: Summary, target: Target) -> str:
    """OK when the whole interval meets the target, MISS when the whole interval fails it,
    INCONCLUSIVE when it straddles the bound."""
    low_ok, high_ok = target.met(summary.low), target.met(summary.high)
    if low_ok and high_ok:
        return "OK"
    if not low_ok and not high_ok:
        return "MISS"
    return "INCONCLUSIVE"


def interleave(
    a: Callable[[], object],
    b: Callable[[], object],
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    log: Callable[[str], None] | None = None,
) -> list[tuple[float, float]]:
    """(seconds of A, seconds of B) per round after `warmup` untimed pairs; even rounds run A
    first, odd rounds B first."""
    for _ in range(warmup):
        a()
        b()
    pairs = []
    for i in range(rounds):
        if i % 2 == 0:
            ta = seconds(a)
            tb = seconds(b)
        else:
            tb = seconds(b)
            ta = seconds(a)
        pairs.append((ta, tb))
        if log is not None:
            log(f"    round {i + 1}: {'A-B' if i % 2 == 0 else 'B-A'}  A {ta:.3f}s  B {tb:.3f}s")
    return pairs


def judge(
    name: str,
    pairs: Sequence[tuple[float, float]],
    ratio: Callable[[float, float], float],
    target: Target,
    detail: str = "",
) -> tuple[Summary, str]:
    """Per-round ratios from timings, summarised and judged; prints one verdict line."""
    ratios = [ratio(ta, tb) for ta, tb in pairs]
    s = summarize(ratios)
    v = verdict(s, target)
    print(f"    ratios: {' '.join(f'{r:.3f}' for r in ratios)}", flush=True)
    print(
        f"[{v}] {name}: median {s.median:.3f}, 95% CI [{s.low:.3f}, {s.high:.3f}], "
        f"IQR [{s.q1:.3f}, {s.q3:.3f}] (target {target}, {len(ratios)} rounds)"
        + (f" — {detail}" if detail else ""),
        flush=True,
    )
    return s, v


def compare(
    name: str,
    a: Callable[[], object],
    b: Callable[[], object],
    target: Target,
    ratio: Callable[[float, float], float] = lambda ta, tb: tb / ta,
    rounds: int = ROUNDS,
    warmup: int = WARMUP,
    labels: tuple[str, str] = ("A", "B"),
) -> tuple[Summary, str, list[tuple[float, float]]]:
    """Interleave A and B, print every round, and judge the median ratio (default: A's speed
    relative to B, i.e. B's seconds over A's) against `target` by its interval."""
    print(f"  {name}: A = {labels[0]}, B = {labels[1]}", flush=True)
    pairs = interleave(a, b, rounds, warmup, log=lambda line: print(line, flush=True))
    med_a = statistics.median(p[0] for p in pairs)
    med_b = statistics.median(p[1] for p in pairs)
    detail = f"median A {med_a:.3f}s, B {med_b:.3f}s"
    s, v = judge(name, pairs, ratio, target, detail)
    return s, v, pairs


def skip(name: str, reason: str) -> None:
    print(f"[SKIP] {name}: {reason}", flush=True)


def info(name: str, detail: str) -> None:
    print(f"[info] {name}: {detail}", flush=True)
