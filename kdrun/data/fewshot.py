"""N-way K-shot sampling: which classes, which labelled images, which test images."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

AUTO_POOL = 500  # per class: the pool=auto cap (the measured best recipe on CIFAR-10)


@dataclass
class Episode:
    """Indices into the dataset's splits; labels are remapped to 0..ways-1 in `classes` order."""

    classes: list[int]
    shot_indices: torch.Tensor
    shot_labels: torch.Tensor
    teacher_indices: torch.Tensor
    teacher_labels: torch.Tensor
    test_indices: torch.Tensor
    test_labels: torch.Tensor
    pool_indices: torch.Tensor  # unlabelled for the student: same classes, never shots or test
    seed: int

    @property
    def ways(self) -> int:
        return len(self.classes)


def _select(labels: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """All indices whose label is in `classes`, with labels remapped to class positions."""
    remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    new = remap[labels]
    idx = torch.nonzero(new >= 0).squeeze(1)
    return idx, new[idx]


def sample_episode(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    ways: int,
    shots: int,
    seed: int,
    pool: int = 0,
) -> Episode:
    """Draw `ways` classes (all of them, in order, when ways == num_classes), `shots` labelled
    images each, and `pool` further training images each whose labels the student never sees.
    kdrun/preflight.py refuses settings that do not fit the data; here they are a bug."""
    assert 2 <= ways <= num_classes, f"ways={ways} outside 2..{num_classes}: preflight missed it"
    gen = torch.Generator().manual_seed(seed)
    if ways == num_classes:
        classes = list(range(num_classes))
    else:
        classes = sorted(torch.randperm(num_classes, generator=gen)[:ways].tolist())
    shot_idx, pool_idx = [], []
    for c in classes:
        members = torch.nonzero(train_labels == c).squeeze(1)
        assert len(members) >= shots + pool, f"class {c}: {len(members)} < {shots} + {pool}"
        order = members[torch.randperm(len(members), generator=gen)]
        shot_idx.append(order[:shots])
        pool_idx.append(order[shots : shots + pool])  # disjoint from the shots by construction
    shot_indices = torch.cat(shot_idx)
    shot_labels = torch.arange(len(classes)).repeat_interleave(shots)
    teacher_indices, teacher_labels = _select(train_labels, classes)
    test_indices, test_labels = _select(test_labels, classes)
    return Episode(
        classes=classes,
        shot_indices=shot_indices,
        shot_labels=shot_labels,
        teacher_indices=teacher_indices,
        teacher_labels=teacher_labels,
        test_indices=test_indices,
        test_labels=test_labels,
        pool_indices=torch.cat(pool_idx),
        seed=seed,
    )


def resolve_pool(
    cfg: DictConfig,
    classes: list[str],
    train_counts: list[int],
    unit: str = "training images",
    announce: bool = False,
) -> int:
    """The pool size per class the run uses. `pool=auto` takes AUTO_POOL capped to what the
    smallest class has left after the shots, so a small image set works without tuning;
    `pool=all` takes all of that; an integer is taken as given (check_counts refuses one that
    does not fit). The one place that reads `cfg.pool`: everything downstream gets this integer.
    Only transfer=pool draws real images beyond the shots: every other transfer's pool is 0."""
    if transfer_name(cfg) != "pool":
        return 0
    if cfg.pool not in ("auto", "all"):
        return int(cfg.pool)
    fewest = min(train_counts)
    left = max(0, fewest - cfg.shots)
    pool = min(AUTO_POOL, left) if cfg.pool == "auto" else left
    if announce:
        name = classes[train_counts.index(fewest)]
        cap = "the cap; " if cfg.pool == "auto" and pool == AUTO_POOL else ""
        log.info(
            "pool=%s: %d per class (%sclass %r has %d %s)", cfg.pool, pool, cap, name, fewest, unit
        )
    return pool


def transfer_name(cfg: DictConfig) -> str:
    """The configured transfer source; configs made without the group are the pool's."""
    return OmegaConf.select(cfg, "transfer.name", default="pool", throw_on_missing=False) or "pool"


def episode_seed(seed: int, episode: int) -> int:
    """Episode 0 draws what a single run with `seed` draws; later ones are independent draws."""
    return seed if episode == 0 else seed + 1_000_003 * episode
