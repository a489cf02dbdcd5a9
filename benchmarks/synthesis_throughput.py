"""transfer=inversion's synthesis (BatchNorm-statistics hooks, CE to a target, TV and L2 priors,
jitter, clamping to the pixel range), interleaved round by round against two plain loops on the
same batch, `teacher=fast`'s ResNet-20 as teacher:

1. a hand-written DeepInversion step (NVlabs' hook: a permuted copy of each BatchNorm input,
   the same terms and schedule): kdrun's overhead on the same method, target images/s >= 0.9;
2. teacher forward and backward to the pixels with Adam and nothing else: what the method's
   own terms cost on top of the teacher's passes. Printed with its interval, no target: the
   BatchNorm term reduces every BatchNorm input and back-propagates through the reduction, about
   a third of a ResNet-20 step on 2 CPU cores, whoever writes the loop."""

from __future__ import annotations

import tempfile

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from benchmarks.common import (
    Target,
    cifar_sized,
    compare,
    cpu_runtime,
    info,
    interleave,
    summarize,
)
from kdrun.config import register_configs
from kdrun.data.fewshot import sample_episode
from kdrun.data.registry import ImageDataset, ImageSplit
from kdrun.episode_inputs import RunInputs
from kdrun.models import build_model
from kdrun.store.cache import ArtifactCache
from kdrun.transfer import build_transfer
from kdrun.transfer.synthesis import frozen, pixel_bounds

BATCH, STEPS, WAYS = 64, 4, 10


def inversion_config():
    register_configs()
    overrides = ["transfer=inversion", f"transfer.batch_size={BATCH}", f"transfer.steps={STEPS}"]
    with initialize_config_module("kdrun.conf", version_base="1.3"):
        return compose("config", overrides).transfer


def teacher_with_statistics() -> torch.nn.Module:
    """A ResNet-20 whose BatchNorm running statistics differ from a fresh layer's."""
    torch.manual_seed(0)
    model = build_model("resnet20", WAYS)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(BATCH, 3, 32, 32) * 1.5 + 0.2)
    return model.eval()


def episode_inputs(tmp_cache):
    images, labels, normalize = cifar_sized(1_000, WAYS)
    split = ImageSplit(images, labels)
    dataset = ImageDataset(split, ImageSplit(images[:100], labels[:100]), list("abcdefghij"), "b")
    augment = OmegaConf.create({"crop_padding": 4, "flip": True})
    shared = RunInputs(dataset, normalize, cpu_runtime(), ArtifactCache(tmp_cache), 256, augment)
    return shared.for_episode(sample_episode(labels, labels[:100], WAYS, WAYS, 5, seed=0))


def plain_inversion(teacher: torch.nn.Module, start: torch.Tensor, targets: torch.Tensor) -> None:
    """The same number of teacher forward and backward passes on the same batch, nothing else."""
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=0.1, betas=(0.5, 0.9))
    for _ in range(STEPS):
        loss = F.cross_entropy(teacher(x), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


class NVlabsHook:
    """DeepInversion's reference feature hook, as NVlabs wrote it: a permuted, contiguous copy
    of the BatchNorm input, then its variance."""

    def __init__(self, layer: torch.nn.Module) -> None:
        self.handle = layer.register_forward_hook(self.hook)
        self.term = torch.zeros(())

    def hook(self, layer, inputs, output) -> None:
        x = inputs[0]
        channels = x.shape[1]
        mean = x.mean([0, 2, 3])
        var = x.permute(1, 0, 2, 3).contiguous().view(channels, -1).var(1, unbiased=False)
        self.term = torch.norm(layer.running_var - var, 2) + torch.norm(
            layer.running_mean - mean, 2
        )


def plain_deepinversion(cfg, teacher, start, targets, low, high) -> None:
    """The same DeepInversion batch written as one plain loop."""
    hooks = [NVlabsHook(m) for m in teacher.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr, betas=(0.5, 0.9))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        dy, dx = torch.randint(-cfg.jitter, cfg.jitter + 1, (2,), generator=gen).tolist()
        view = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if torch.rand((), generator=gen) < 0.5:
            view = view.flip(3)
        d1, d2 = view[:, :, :, :-1] - view[:, :, :, 1:], view[:, :, :-1, :] - view[:, :, 1:, :]
        d3, d4 = (
            view[:, :, 1:, :-1] - view[:, :, :-1, 1:],
            view[:, :, :-1, :-1] - view[:, :, 1:, 1:],
        )
        tv = sum(torch.norm(d) for d in (d1, d2, d3, d4))
        loss = F.cross_entropy(teacher(view), targets) + cfg.bn_weight * sum(h.term for h in hooks)
        loss = loss + cfg.tv_weight * tv + cfg.l2_weight * torch.norm(view)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.copy_(torch.max(torch.min(x, high), low))
    for hook in hooks:
        hook.handle.remove()


def main() -> None:
    cfg = inversion_config()
    teacher = teacher_with_statistics()
    inversion = build_transfer(cfg)
    with tempfile.TemporaryDirectory() as tmp, frozen(teacher):
        inputs = episode_inputs(tmp)
        gen = torch.Generator().manual_seed(0)
        targets = torch.arange(BATCH) % WAYS
        start = inversion.start_images(targets, inputs, gen)
        low, high = pixel_bounds(inputs)
        setting = f"resnet20, batch {BATCH}, {STEPS} steps, {torch.get_num_threads()} threads"
        compare(
            f"inversion synthesis vs a plain DeepInversion loop ({setting})",
            lambda: inversion.make_batch(0, BATCH, teacher, None, None, inputs),
            lambda: plain_deepinversion(cfg, teacher, start, targets, low, high),
            Target(">=", 0.9),
            labels=("kdrun inversion", "plain DeepInversion"),
        )
        print(f"  the same synthesis vs the bare teacher passes ({setting})", flush=True)
        pairs = interleave(
            lambda: inversion.make_batch(0, BATCH, teacher, None, None, inputs),
            lambda: plain_inversion(teacher, start, targets),
            log=lambda line: print(line, flush=True),
        )
        s = summarize([tb / ta for ta, tb in pairs])
        info(
            "what DeepInversion's own terms cost (no target)",
            f"synthesis runs at {s.median:.2f} of the bare teacher forward+backward's images/s, "
            f"95% CI [{s.low:.2f}, {s.high:.2f}]",
        )


if __name__ == "__main__":
    main()
