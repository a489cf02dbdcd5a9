"""The teacher's training path for `teacher=fast` (ResNet-20, batch 256, pad-4 crop + flip,
label smoothing 0.1, SGD + Nesterov, warm-up + cosine, gradient clip) against a plain PyTorch
loop doing the same work, interleaved round by round. Target: images/s ratio kdrun/plain ≥ 0.95,
judged by its 95% interval. Also prints both loops' images/s and the thread count: the figure
behind the README's `teacher=fast` time (50,000 images x 13 epochs)."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from benchmarks.common import Target, cifar_sized, compare, cpu_runtime, info
from kdrun.config import register_configs
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit

STEPS, PADDING = 2, 4  # 2 x 256 images a call: ~4 s on a slow 2-core day


def teacher_config():
    register_configs()
    with initialize_config_module("kdrun.conf", version_base="1.3"):
        return compose("config", ["teacher=fast"]).teacher


def kdrun_teacher(cfg, images, labels, normalize) -> None:
    """What kdrun.stages.teacher._train runs: the same set, loss, schedule and loop."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, 10)
    train_set = AugmentedSet(images, {"labels": labels}, normalize, PADDING, True)
    loss = build_loss(OmegaConf.create({"name": "ce"}), cfg.label_smoothing)
    schedule = Schedule.from_config(cfg, STEPS)
    fit(model, train_set, loss, schedule, cpu_runtime(), seed=cfg.seed, stage="teacher")


def plain_teacher(cfg, images, labels, normalize) -> None:
    """A hand-written loop: random batches, batched pad-crop-flip, the same optimiser,
    schedule, smoothing and clip."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, 10)
    model.train()
    opt = torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=True,
        weight_decay=cfg.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, Schedule(STEPS, cfg.batch_size, 1).lr_factor)
    gen = torch.Generator().manual_seed(0)
    n, b = len(images), cfg.batch_size
    for _ in range(STEPS):
        idx = torch.randint(0, n, (b,), generator=gen)
        padded = F.pad(images[idx], (PADDING,) * 4)
        dy, dx = torch.randint(0, 2 * PADDING + 1, (2, b), generator=gen)
        rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
        batch, chan = torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
        x = torch.where(torch.rand(b, 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)
        logits = model(normalize(x))
        loss = F.cross_entropy(logits, labels[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
        opt.step()
        sched.step()


def main() -> None:
    cfg = teacher_config()
    images, labels, normalize = cifar_sized(5_000)
    threads = torch.get_num_threads()
    cpu = {"kdrun": [], "plain": []}  # CPU seconds: what a loaded machine does not inflate

    def on_cpu(name, fn):
        def call() -> None:
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)

        return call

    _, _, pairs = compare(
        f"teacher=fast training path vs plain PyTorch ({cfg.arch}, batch {cfg.batch_size}, "
        f"{STEPS} steps, {threads} threads)",
        on_cpu("kdrun", lambda: kdrun_teacher(cfg, images, labels, normalize)),
        on_cpu("plain", lambda: plain_teacher(cfg, images, labels, normalize)),
        Target(">=", 0.95),
        labels=("kdrun fit()", "plain loop"),
    )
    work = STEPS * cfg.batch_size
    ours = work / statistics.median(p[0] for p in pairs)
    plain = work / statistics.median(p[1] for p in pairs)
    epoch_images = 50_000 // cfg.batch_size * cfg.batch_size
    minutes = cfg.epochs * epoch_images / ours / 60
    cpu_ours, cpu_plain = (work / statistics.median(cpu[k][1:]) for k in ("kdrun", "plain"))
    info(
        "teacher=fast images per CPU-second (warm-up excluded)",
        f"kdrun {cpu_ours:.0f}, plain {cpu_plain:.0f}: the wall-clock rate of an otherwise idle "
        "core at this thread count",
    )
    info(
        "teacher=fast throughput",
        f"kdrun {ours:.0f} images/s, plain {plain:.0f} images/s on {threads} thread(s): "
        f"{cfg.epochs} epochs of CIFAR-10 would take {minutes:.1f} min of training at kdrun's rate",
    )


if __name__ == "__main__":
    main()
