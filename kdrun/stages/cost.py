"""Cost accounting of the run's models, measured once per architecture and machine: the figures
depend on the architecture, the head's width, the input size, the CPU, the thread count and the
torch version, never on the weights, so a sweep reuses them from the cache."""

from __future__ import annotations

import logging
import time

import torch

from kdrun.measure.cost import cpu_name, model_cost
from kdrun.models import build_model
from kdrun.store.cache import ArtifactCache, digest

log = logging.getLogger(__name__)

KIND = "cost"


def cost_key(arch: str, num_classes: int, image_size: int) -> str:
    return digest(
        {
            "kind": KIND,
            "v": 1,
            "arch": arch,
            "num_classes": num_classes,
            "image_size": image_size,
            "device": f"cpu: {cpu_name()}",
            "threads": torch.get_num_threads(),
            "torch": str(torch.__version__),
        }
    )


def arch_cost(arch: str, num_classes: int, image_size: int, cache: ArtifactCache) -> dict:
    """The five figures for `arch` (see kdrun/measure/cost.py), from the cache when measured."""

    def build() -> dict:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # building must not shift the run's RNG
            model = build_model(arch, num_classes)
        figures = model_cost(model, image_size)
        log.info("cost: measured %s in %.2fs", arch, time.perf_counter() - start)
        return {**figures, "device": f"cpu: {cpu_name()}", "torch": str(torch.__version__)}

    entry, _ = cache.get_or_build(KIND, cost_key(arch, num_classes, image_size), build)
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def run_costs(archs: dict[str, str], num_classes: int, image_size: int, cache: ArtifactCache):
    """{role: figures} for each role's architecture; one measurement (or cache read) per arch."""
    by_arch: dict[str, dict] = {}
    for arch in archs.values():
        if arch not in by_arch:
            by_arch[arch] = arch_cost(arch, num_classes, image_size, cache)
    return {role: dict(by_arch[arch]) for role, arch in archs.items()}
