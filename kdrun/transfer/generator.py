"""transfer=generator: a small class-conditional generator trained against the teacher (its
BatchNorm statistics and cross-entropy to the asked class, as in Fast-DFKD/CMI) and against a
proxy student (DFAD/ZSKT's adversarial term: images where the two disagree). It carries its
weights from batch to batch; each cached batch also stores them, so a killed synthesis resumes
where it stopped and ends with the same images as an uninterrupted one."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.episode_inputs import EpisodeInputs
from kdrun.transfer.bn_stats import BatchNormStatistics
from kdrun.transfer.proxy import ProxyStudent
from kdrun.transfer.registry import register_transfer
from kdrun.transfer.synthesis import Synthesis, balanced_targets, to_uint8

WIDTH = 64


class ConditionalGenerator(nn.Module):
    """Noise and a class embedding -> 4x4 features -> three 2x upsamplings -> sigmoid pixels."""

    def __init__(self, latent: int, ways: int, size: int) -> None:
        super().__init__()
        self.start = max(1, size // 8)
        self.embed = nn.Embedding(ways, latent)
        self.fc = nn.Linear(2 * latent, WIDTH * self.start * self.start)

        def up(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2),
            ]

        self.net = nn.Sequential(
            nn.BatchNorm2d(WIDTH),
            *up(WIDTH, WIDTH),
            *up(WIDTH, WIDTH),
            *up(WIDTH, WIDTH // 2),
            nn.Conv2d(WIDTH // 2, 3, 3, padding=1),
            nn.Upsample(size=(size, size)),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, self.embed(y)], dim=1))
        return self.net(h.view(len(z), WIDTH, self.start, self.start))


@register_transfer("generator")
class Generator(Synthesis):
    ranges = {**Synthesis.ranges, "latent": (1, 4096, "noise dimensions")}

    def start(self, inputs: EpisodeInputs) -> dict[str, Any]:
        torch.manual_seed(self.batch_seed(inputs, -2))
        size = inputs.dataset.train.images.shape[-1]
        net = ConditionalGenerator(self.cfg.latent, inputs.episode.ways, size)
        net = net.to(inputs.runtime.device)
        opt = torch.optim.Adam(net.parameters(), lr=self.cfg.lr, betas=(0.5, 0.999))
        return {"net": net, "opt": opt}

    def resume(self, state: dict[str, Any], entry: dict) -> None:
        state["net"].load_state_dict(entry["state"]["net"])
        state["opt"].load_state_dict(entry["state"]["opt"])

    def make_batch(
        self,
        b: int,
        n: int,
        teacher: nn.Module,
        proxy: ProxyStudent | None,
        state: dict[str, Any],
        inputs: EpisodeInputs,
    ) -> dict[str, Any]:
        cfg, dev, ways = self.cfg, inputs.runtime.device, inputs.episode.ways
        net, opt = state["net"], state["opt"]
        gen = torch.Generator().manual_seed(self.batch_seed(inputs, b))
        net.train()
        with BatchNormStatistics(teacher) as bn:
            for step in range(cfg.steps):
                z = torch.randn(n, cfg.latent, generator=gen).to(dev)
                y = balanced_targets(n, ways, gen, step * n).to(dev)
                x = (net(z, y) - inputs.normalize.mean) / inputs.normalize.std
                logits = teacher(x)
                loss = cfg.ce_weight * F.cross_entropy(logits, y) + cfg.bn_weight * bn.pop()
                if proxy is not None:
                    loss = loss - cfg.adversarial_weight * proxy.disagreement(x, logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        z = torch.randn(n, cfg.latent, generator=gen).to(dev)
        y = balanced_targets(n, ways, gen, b * cfg.batch_size)
        with torch.no_grad():
            x = (net(z, y.to(dev)) - inputs.normalize.mean) / inputs.normalize.std
        return {
            "images": to_uint8(x, inputs),
            "targets": y,
            "state": {
                "net": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                "opt": opt.state_dict(),
            },
        }
