"""N-way K-shot sampling: which classes, which labelled images, which test images."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

AUTO_POOL = 500  # per class: the pool=auto cap (the measured best recipe on CIFAR-10)
# The validation images are drawn with this fixed seed, per class, independently of the run's
# seed: every episode and every seed of a search holds out the same images.
VAL_SEED = 25_025


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
    # data.val_per_class labelled training images per class, held out of the shots, the pool
    # and the teacher's training set: what a search selects on (empty when 0).
    val_indices: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    val_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    val_per_class: int = 0

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


def validation_mask(train_labels: torch.Tensor, num_classes: int, per_class: int) -> torch.Tensor:
    """True for the held-out validation images: `per_class` of each class, drawn by a generator
    of its own (VAL_SEED + class), so the split is the same whatever the seed, ways or episode."""
    held = torch.zeros(len(train_labels), dtype=torch.bool)
    if per_class == 0:
        return held
    for c in range(num_classes):
        members = torch.nonzero(train_labels == c).squeeze(1)
        gen = torch.Generator().manual_seed(VAL_SEED + c)
        held[members[torch.randperm(len(members), generator=gen)[:per_class]]] = True
    return held


def sample_episode(
    train_labels: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    ways: int,
    shots: int,
    seed: int,
    pool: int = 0,
    val_per_class: int = 0,
) -> Episode:
    """Draw `ways` classes (all of them, in order, when ways == num_classes), `shots` labelled
    images each, and `pool` further training images each whose labels the student never sees,
    all from the images left after the validation split (validation_mask).
    kdrun/preflight.py refuses settings that do not fit the data; here they are a bug."""
    assert 2 <= ways <= num_classes, f"ways={ways} outside 2..{num_classes}: preflight missed it"
    gen = torch.Generator().manual_seed(seed)
    if ways == num_classes:
        classes = list(range(num_classes))
    else:
        classes = sorted(torch.randperm(num_classes, generator=gen)[:ways].tolist())
    held = validation_mask(train_labels, num_classes, val_per_class)
    shot_idx, pool_idx = [], []
    for c in classes:
        members = torch.nonzero((train_labels == c) & ~held).squeeze(1)
        assert len(members) >= shots + pool, f"class {c}: {len(members)} < {shots} + {pool}"
        order = members[torch.randperm(len(members), generator=gen)]
        shot_idx.append(order[:shots])
        pool_idx.append(order[shots : shots + pool])  # disjoint from the shots by construction
    shot_indices = torch.cat(shot_idx)
    shot_labels = torch.arange(len(classes)).repeat_interleave(shots)
    selected, selected_labels = _select(train_labels, classes)
    is_val = held[selected]
    # The teacher never trains on the validation images: a teacher that had memorised them
    # would hand the student their labels and inflate the score a search selects on.
    teacher_indices, teacher_labels = selected[~is_val], selected_labels[~is_val]
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
        val_indices=selected[is_val],
        val_labels=selected_labels[is_val],
        val_per_class=val_per_class,
    )


def resolve_pool(
    cfg: DictConfig,
    classes: list[str],
    train_counts: list[int],
    unit: str = "training images",
    announce: bool = False,
) -> int:
    """The pool size per class the run uses. `pool=auto` takes AUTO_POOL capped to what the
    smallest class has left after the shots and the validation images, so a small image set
    works without tuning; `pool=all` takes all of that; an integer is taken as given
    (check_counts refuses one that does not fit). The one place that reads `cfg.pool`:
    everything downstream gets this integer. Only transfer=pool draws real images beyond the
    shots: every other transfer's pool is 0."""
    if transfer_name(cfg) != "pool":
        return 0
    if cfg.pool not in ("auto", "all"):
        return int(cfg.pool)
    fewest = min(train_counts)
    left = max(0, fewest - cfg.shots - cfg.data.val_per_class)
    pool = min(AUTO_POOL, left) if cfg.pool == "auto" else left
    if announce:
        name = classes[train_counts.index(fewest)]
        cap = "the cap; " if cfg.pool == "auto" and pool == AUTO_POOL else ""
        val = cfg.data.val_per_class
        held = f", {val} of them held out for validation" if val else ""
        log.info(
            "pool=%s: %d per class (%sclass %r has %d %s%s)",
            cfg.pool,
            pool,
            cap,
            name,
            fewest,
            unit,
            held,
        )
    return pool


def transfer_name(cfg: DictConfig) -> str:
    """The configured transfer source; configs made without the group are the pool's."""
    return OmegaConf.select(cfg, "transfer.name", default="pool", throw_on_missing=False) or "pool"


def episode_seed(seed: int, episode: int) -> int:
    """Episode 0 draws what a single run with `seed` draws; later ones are independent draws."""
    return seed if episode == 0 else seed + 1_000_003 * episode
