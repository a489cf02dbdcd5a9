"""The one training loop (teacher, baseline and student differ only by data and loss) and
the one inference function (test metrics and soft labels)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.data.augment import Normalize
from kdrun.errors import DivergedError
from kdrun.losses import Distiller
from kdrun.losses.features import FeatureTap
from kdrun.measure.finite import first_nonfinite
from kdrun.optimizers import build_optimizer
from kdrun.runtime.device import Runtime
from kdrun.runtime.progress import Meter, Running, stage_progress
from kdrun.store.checkpoint import LoopState, TrainingCheckpoint


@dataclass
class Schedule:
    """An optimiser (SGD with Nesterov momentum by default), linear warm-up then cosine decay,
    counted in optimiser steps."""

    steps: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 0.0
    warmup_fraction: float = 0.05
    optimizer: str = "sgd"

    @classmethod
    def from_config(cls, cfg: DictConfig, steps: int) -> Schedule:
        """A stage's schedule from its config group (teacher.* or student.*)."""
        return cls(
            steps,
            cfg.batch_size,
            cfg.lr,
            cfg.momentum,
            cfg.weight_decay,
            cfg.grad_clip,
            optimizer=cfg.optimizer,
        )

    def lr_factor(self, step: int) -> float:
        warmup = max(1, int(self.steps * self.warmup_fraction))
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, self.steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights as plain CPU tensors: what checkpoints and cache entries store."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def draws_per_pass(train_set: TrainingSet, batch_size: int) -> int:
    """Indices a pass draws from: each image once, or, when a set of stored views holds fewer
    images than a batch (10-way 1-shot: 10), each image several times with its own random
    view, so a batch still holds `batch_size` inputs instead of one view per image."""
    n, views = len(train_set), getattr(train_set, "views", 1)
    if n >= batch_size or views <= 1:
        return n
    return n * min(views, math.ceil(batch_size / n))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches only (a ragged last batch of 1 breaks BatchNorm); one batch if n is small."""
    return max(1, n // batch_size)


@dataclass
class Probe:
    """Scores the model at chosen steps of its budget (the learning curve); reporting only, so
    nothing in training reads what it measured."""

    steps: tuple[int, ...]
    score: Callable[[nn.Module], dict[str, float]]  # e.g. {"test_acc": .., "val_acc": ..}
    points: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # what scoring cost, inside the stage's time

    def __call__(self, step: int, model: nn.Module) -> None:
        start = time.perf_counter()
        self.points.append({"step": step, **self.score(model)})
        self.seconds += time.perf_counter() - start


def curve_steps(total: int, fractions: Iterable[float]) -> tuple[int, ...]:
    """The steps at which `fractions` of a `total`-step budget are done, without duplicates."""
    return tuple(sorted({min(total, max(1, round(f * total))) for f in fractions}))


def settings_prefix(stage: str) -> str:
    """The config group whose settings drove `stage`: the baseline trains with student.*."""
    return "teacher" if stage == "teacher" else "student"


def check_finite_weights(model: nn.Module, stage: str, step: int) -> None:
    """A NaN or infinite weight or buffer makes every later number meaningless."""
    found = first_nonfinite(model.state_dict().items())
    if found is not None:
        name, bad = found
        detail = f"{bad} non-finite value(s) in {name!r}"
        raise DivergedError(stage, detail, settings_prefix(stage), step)


class EpochSums:
    """Loss, images and accuracy counts of an epoch, summed on the device; `read` syncs once."""

    def __init__(self, loss_sum: torch.Tensor, correct: torch.Tensor, labelled: torch.Tensor):
        self.loss_sum, self.correct, self.labelled, self.images = loss_sum, correct, labelled, 0

    @classmethod
    def zeros(cls, dev: torch.device) -> EpochSums:
        count = torch.zeros((), device=dev, dtype=torch.int64)
        return cls(torch.zeros((), device=dev), count, count.clone())

    def add(
        self, loss: torch.Tensor, images: int, logits: torch.Tensor, labels: torch.Tensor
    ) -> None:
        self.loss_sum += loss * images
        labelled = labels >= 0  # pool images carry -1: no accuracy for them
        self.correct += (logits.argmax(1) == labels)[labelled].sum()
        self.labelled += labelled.sum()
        self.images += images

    def read(self) -> Running:
        if not self.images:
            return Running()
        loss_sum, correct, labelled = torch.stack(
            [self.loss_sum, self.correct.float(), self.labelled.float()]
        ).tolist()
        return Running(loss_sum, self.images, int(correct), int(labelled))


class TrainingSet(Protocol):
    """Turns a batch of indices into normalised inputs and the loss's targets."""

    def __len__(self) -> int: ...

    def batch(
        self, idx: torch.Tensor, gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def fit(
    model: nn.Module,
    train_set: TrainingSet,
    distiller: Distiller,
    schedule: Schedule,
    runtime: Runtime,
    *,
    seed: int,
    stage: str,
    checkpoint: TrainingCheckpoint | None = None,
    probe: Probe | None = None,
    explode_ratio: float | None = None,
) -> list[dict]:
    """Train in place on a set already on the device; returns one history row per epoch.

    The loss sees the student's features at the layers it names and trains its own parameters
    (projections) alongside the model's. With `checkpoint`, resume from its saved state and
    save state between epochs. A non-finite loss stops training with DivergedError at the end
    of its epoch, before anything is saved, and so does an epoch whose mean loss is
    `explode_ratio` times the first step's or more; `probe` scores the model at its steps."""
    dev = runtime.device
    n = len(train_set)
    draws = draws_per_pass(train_set, schedule.batch_size)  # n unless views fill a batch
    bs = min(schedule.batch_size, draws)
    per_epoch = steps_per_epoch(draws, bs)
    epochs = math.ceil(schedule.steps / per_epoch)
    gen = torch.Generator(device=dev).manual_seed(seed)
    params = [*model.parameters(), *distiller.to(dev).parameters()]
    opt = build_optimizer(
        schedule.optimizer, params, schedule.lr, schedule.momentum, schedule.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule.lr_factor)
    history, step, first = [], 0, 1
    state = LoopState(model, opt, sched, gen)
    if checkpoint is not None and checkpoint.restore(state, epochs):
        history, step, first = state.history, state.step, state.epoch + 1
    start = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)
    model.train()
    distiller.train()
    net = torch.compile(model) if runtime.compile else model  # shares model's parameters
    tap = FeatureTap(model, distiller.student_layers)
    probe_at = set(probe.steps) if probe is not None else set()
    first_bad = torch.full((), -1, device=dev, dtype=torch.int64)  # no host sync per step
    past = Running()  # the finished epochs of this process, on the host
    sums = EpochSums.zeros(dev)
    first_loss = torch.tensor(history[0]["loss"]) if history else None  # resumed: epoch 1's
    with tap, stage_progress(stage, schedule.steps, done=step) as progress:
        progress.watch(lambda: past + sums.read())  # read when shown: no per-step host sync
        for epoch in range(first, epochs + 1):
            perm = torch.randperm(draws, generator=gen, device=dev) % n  # as before if draws == n
            for i in range(min(per_epoch, schedule.steps - step)):
                idx = perm[i * bs : (i + 1) * bs]
                x, batch = train_set.batch(idx, gen)
                if runtime.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with runtime.autocast():
                    logits = net(x)
                terms = distiller(logits.float(), batch, tap.features, step / schedule.steps)
                loss = sum(terms.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if schedule.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, schedule.grad_clip, foreach=True)
                opt.step()
                sched.step()
                step += 1
                if first_loss is None:
                    first_loss = loss.detach()  # read at the epoch's end: no sync here
                bad = ~torch.isfinite(loss.detach())
                first_bad = torch.where(bad & (first_bad < 0), step, first_bad)
                sums.add(loss.detach(), len(idx), logits, batch["labels"])
                progress.advance()
                if step in probe_at:
                    _raise_if_diverged(first_bad, stage)
                    probe(step, model)
                    model.train()
            _raise_if_diverged(first_bad, stage)
            epoch_sums = sums.read()  # one host sync per epoch, not per step
            past, sums = past + epoch_sums, EpochSums.zeros(dev)
            if explode_ratio is not None and first_loss is not None:
                _raise_if_exploded(float(first_loss), epoch_sums, explode_ratio, stage, step)
            row = {
                "stage": stage,
                "epoch": epoch,
                "step": step,
                "loss": epoch_sums.loss_sum / epoch_sums.images,
                "train_acc": epoch_sums.correct / max(1, epoch_sums.labelled),  # labelled only
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - start, 3),
            }
            history.append(row)
            if checkpoint is not None:
                checkpoint.after_epoch(
                    LoopState(model, opt, sched, gen, epoch, step, history), epochs
                )
    check_finite_weights(model, stage, step)
    return history


def _raise_if_diverged(first_bad: torch.Tensor, stage: str) -> None:
    step = int(first_bad.item())
    if step >= 0:
        raise DivergedError(stage, "the loss is not finite", settings_prefix(stage), step)


def _raise_if_exploded(first: float, epoch: Running, ratio: float, stage: str, step: int) -> None:
    """A finite loss that grew `ratio`-fold from the first step has diverged by any reading:
    its model would score at chance and teach noise."""
    mean = epoch.loss_sum / max(1, epoch.images)
    if first > 0 and mean >= ratio * first:
        detail = (
            f"the loss exploded from {first:.3g} at step 1 to {mean:.3g} "
            f"(more than {ratio:.0e} times), although it stayed finite"
        )
        raise DivergedError(stage, detail, settings_prefix(stage), step)


@torch.inference_mode()
def predict_inputs(
    model: nn.Module,
    inputs: Iterable[torch.Tensor],
    runtime: Runtime,
    meter: Meter | None = None,
) -> torch.Tensor:
    """Float32 logits on the CPU for already normalised input batches, in eval mode; `meter`
    counts the images (each batch's logits then reach the host before it is counted)."""
    model.eval()
    out = []
    for x in inputs:
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            logits = model(x).float()
        if meter is not None:
            logits = logits.cpu()  # a sync per batch of images, not per training step
            meter.advance(len(logits))
        out.append(logits)
    return torch.cat(out).cpu()


def predict(
    model: nn.Module,
    images: torch.Tensor,
    normalize: Normalize,
    runtime: Runtime,
    batch_size: int = 1000,
    meter: Meter | None = None,
) -> torch.Tensor:
    """Logits for uint8 `images` (any device), un-augmented: test metrics and clean soft labels."""
    batches = (normalize(c.to(runtime.device, non_blocking=True)) for c in images.split(batch_size))
    return predict_inputs(model, batches, runtime, meter)
