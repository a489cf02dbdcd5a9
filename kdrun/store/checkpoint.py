"""Periodic training-state checkpoints for `fit`, so a killed teacher resumes where it stopped
instead of starting over. Everything the loop's future depends on is saved (weights, optimiser,
LR schedule, the data-order generator, torch's global RNG, epoch, step, history), so on CPU a
resumed run is bit-identical to an uninterrupted one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdrun.store.cache import ArtifactCache, digest

log = logging.getLogger(__name__)

KIND = "teacher_state"
STATE_VERSION = 1  # bump when the saved fields change: old states are then simply not found
REQUIRED = {"epoch", "epochs", "step", "model", "optimizer", "scheduler", "generator"}
REQUIRED |= {"torch_rng", "device", "history"}


@dataclass
class LoopState:
    """What `fit` hands to a checkpoint between epochs (and gets back when resuming)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epoch: int = 0  # last finished epoch
    step: int = 0
    history: list[dict] = field(default_factory=list)


class TrainingCheckpoint:
    """Saves a LoopState every `every` epochs as a cache entry named by a hash of `owner_key`
    (written atomically, checksummed), and restores it when `resume` is set."""

    def __init__(
        self, cache: ArtifactCache, owner_key: str, every: int, resume: bool, stage: str
    ) -> None:
        self.cache, self.every, self.resume, self.stage = cache, every, resume, stage
        self.key = digest({"kind": KIND, "owner": owner_key, "v": STATE_VERSION})

    @property
    def path(self) -> Path:
        return self.cache.path(KIND, self.key)

    def restore(self, state: LoopState, epochs: int) -> bool:
        """Load the saved state into `state` (in place); False when there is none to use."""
        self.cache.remove_stale_temps(KIND, self.key)  # the caller holds the owner's lock
        saved = self.cache.load(KIND, self.key)  # a damaged file is reported and moved aside
        if saved is None:
            return False
        device = state.generator.device.type
        where = f"epoch {saved.get('epoch', '?')}/{epochs} ({self.path})"
        if not self.resume:
            log.info("%s: resume=false: ignoring the checkpoint at %s", self.stage, where)
            return False
        problem = _mismatch(saved, state, epochs)
        if problem:
            log.warning("%s: checkpoint at %s %s; starting over", self.stage, where, problem)
            self.discard()
            return False
        state.model.load_state_dict(saved["model"])
        state.optimizer.load_state_dict(saved["optimizer"])
        state.scheduler.load_state_dict(saved["scheduler"])
        state.generator.set_state(saved["generator"].clone())
        torch.set_rng_state(saved["torch_rng"].clone())
        if device == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"].clone(), state.generator.device)
        state.epoch, state.step = int(saved["epoch"]), int(saved["step"])
        state.history = [dict(row) for row in saved["history"]]
        log.info("%s: resuming from %s", self.stage, where)
        return True

    def after_epoch(self, state: LoopState, epochs: int) -> None:
        """Save every `every` epochs; not after the last (the finished artifact follows)."""
        if state.epoch % self.every or state.epoch >= epochs:
            return
        device = state.generator.device
        entry = {
            "epoch": state.epoch,
            "epochs": epochs,
            "step": state.step,
            "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "generator": state.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "device": device.type,
            "history": state.history,
        }
        if device.type == "cuda":
            entry["cuda_rng"] = torch.cuda.get_rng_state(device)
        self.cache.save(KIND, self.key, entry)
        log.debug("%s: checkpoint at epoch %d/%d in %s", self.stage, state.epoch, epochs, self.path)

    def discard(self) -> None:
        """Delete the training state once the finished artifact is stored."""
        self.cache.discard(KIND, self.key)


def _mismatch(saved: dict, state: LoopState, epochs: int) -> str:
    """Why `saved` cannot continue this run ("" if it can), checked before anything is loaded so
    a refused state leaves the fresh model and optimiser untouched."""
    missing = REQUIRED - saved.keys()
    if missing:
        return f"lacks {', '.join(sorted(missing))}"
    device = state.generator.device.type
    if saved["device"] != device:
        return f"was made on {saved['device']}, this run is on {device}"
    if saved["epochs"] != epochs or not 0 < saved["epoch"] < epochs:
        return f"is for {saved['epochs']} epochs"
    shapes = {k: tuple(v.shape) for k, v in state.model.state_dict().items()}
    if {k: tuple(v.shape) for k, v in saved["model"].items()} != shapes:
        return "does not fit the model"
    return ""
