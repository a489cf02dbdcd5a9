"""kdrun's training loop against a minimal hand-written PyTorch loop: same model, batch size,
augmentation (batched pad-crop-flip) and threads, interleaved round by round. Target: images/s
ratio kdrun/plain ≥ 0.95, judged by its 95% interval."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from benchmarks.common import Target, cifar_sized, compare, cpu_runtime
from kdrun.data.views import AugmentedSet
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.train import Schedule, fit

STEPS, BATCH, ARCH = 14, 128, "cnn_small"


def plain_loop(images, labels, normalize) -> None:
    torch.manual_seed(0)
    model = build_model(ARCH, 10)
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    gen = torch.Generator().manual_seed(0)
    n = len(images)
    for _ in range(STEPS):
        idx = torch.randint(0, n, (BATCH,), generator=gen)
        padded = F.pad(images[idx], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2, BATCH), generator=gen)  # one crop per image
        rows = (dy[:, None] + torch.arange(32))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(32))[:, None, None, :]
        x = padded[
            torch.arange(BATCH)[:, None, None, None],
            torch.arange(3)[None, :, None, None],
            rows,
            cols,
        ]
        x = torch.where(torch.rand(BATCH, 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)
        loss = F.cross_entropy(model(normalize(x)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def kdrun_loop(images, labels, normalize) -> None:
    torch.manual_seed(0)
    model = build_model(ARCH, 10)
    train_set = AugmentedSet(images, {"labels": labels}, normalize, 4, True)
    loss = build_loss(OmegaConf.create({"name": "ce"}))
    fit(model, train_set, loss, Schedule(STEPS, BATCH, 0.05), cpu_runtime(), seed=0, stage="bench")


def main() -> None:
    images, labels, normalize = cifar_sized()
    plain_loop(images[:512], labels[:512], normalize)  # warm up kernels and allocator
    summary, _, pairs = compare(
        f"overhead: kdrun loop vs plain PyTorch ({ARCH}, batch {BATCH}, {STEPS} steps, "
        f"{torch.get_num_threads()} threads)",
        lambda: kdrun_loop(images, labels, normalize),
        lambda: plain_loop(images, labels, normalize),
        Target(">=", 0.95),
        labels=("kdrun fit()", "plain loop"),
    )
    ta = sorted(p[0] for p in pairs)[len(pairs) // 2]
    tb = sorted(p[1] for p in pairs)[len(pairs) // 2]
    print(f"    images/s: kdrun {STEPS * BATCH / ta:.0f}, plain {STEPS * BATCH / tb:.0f} (medians)")


if __name__ == "__main__":
    main()
