"""Typed schemas for every config group, registered in Hydra's ConfigStore, plus range checks.

Hydra rejects wrong types, unknown keys and unknown options against these schemas before the
task starts; `check_ranges` then rejects values of the right type that make no sense.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kdrun.errors import ConfigError


@dataclass
class TrainConf:
    """Optimiser settings shared by the teacher and the students (kdrun/optimizers.py)."""

    arch: str = MISSING
    optimizer: str = "sgd"  # sgd | adam | adamw; momentum is the Adam family's beta1
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    grad_clip: float = 5.0  # max global gradient norm; 0 disables (KD on tiny sets can spike)


@dataclass
class TeacherConf(TrainConf):
    epochs: int = 10
    seed: int = 0
    checkpoint: str | None = None
    tta_flip: bool = False  # score the teacher on the mean logits of each image and its mirror
    resume: bool = True  # continue a killed training from its last checkpoint
    checkpoint_every: int = 1  # epochs between training-state checkpoints in cache_dir


@dataclass
class StudentConf(TrainConf):
    """The budget: `steps` optimiser steps when set, else `epochs` passes over the training
    inputs (shots + pool, times the views), at least `min_steps`: the CE baseline on a few
    shots converges in a few hundred steps, the distilled student on 20,000 views needs more."""

    batch_size: int = 64
    lr: float = 0.02
    steps: int | None = None
    epochs: float = 20.0
    min_steps: int = 300
    curve: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])


@dataclass
class AugmentConf:
    crop_padding: int = 4
    flip: bool = True


@dataclass
class DataConf:
    """What every data source reads: data=cifar10 and data=folder are typed by it alone."""

    source: str = MISSING
    root: str | None = None
    download: bool = False
    image_size: int = 32
    augment: AugmentConf = field(default_factory=AugmentConf)


@dataclass
class SyntheticDataConf(DataConf):
    """data=synthetic's own keys: `data=cifar10 data.num_classes=5` is an unknown key."""

    num_classes: int = 10
    train_per_class: int = 200
    test_per_class: int = 100
    synthetic_seed: int = 1234


DATA_SCHEMAS = {"cifar10": DataConf, "folder": DataConf, "synthetic": SyntheticDataConf}


@dataclass
class SoftLabelConf:
    """views=0 labels the clean images; V >= 1 labels V stored augmented views of each image."""

    views: int = 4  # augmented views per image labelled by the teacher (0: clean images only)
    mix: str = "none"  # none | mixup | cutmix: mixed views for the distillation term
    mix_alpha: float = 1.0
    # Teacher features for feature methods (fitnet, at, rkd): cached with the views when they
    # fit in feature_cache_mb ("auto"), always cached ("cache") or recomputed each step ("online").
    features: str = "auto"
    feature_cache_mb: float = 256.0


@dataclass
class DeviceConf:
    type: str = "auto"
    precision: str = "auto"
    channels_last: str = "auto"
    threads: int = 0
    compile: bool = False  # torch.compile the training step's model (worth it on long GPU runs)


@dataclass
class Config:
    teacher: TeacherConf = MISSING
    student: StudentConf = MISSING
    data: Any = MISSING  # typed by its source's schema (DATA_SCHEMAS)
    loss: Any = MISSING  # typed by each method's own schema (kdrun/losses/registry.py)
    device: DeviceConf = MISSING
    soft_labels: SoftLabelConf = field(default_factory=SoftLabelConf)
    ways: int = 10  # N: classes per few-shot task (all ten when 10)
    shots: int = 5  # K: labelled training images per class for the student
    seed: int = 0  # draws the classes and shots, and seeds the students
    episodes: int = 1  # independent draws of classes and shots; metrics report mean ± 95% CI
    # Unlabelled training images per class for the student: an integer, "auto" (500 capped
    # to what the smallest class has left after the shots) or "all" (everything the smallest
    # class has left); resolved by fewshot.resolve_pool.
    pool: Any = "auto"
    cache_dir: str = "${oc.env:KDRUN_CACHE_DIR,outputs/cache}"
    eval_batch_size: int = 200  # CPU inference ~35% faster than 1000: activations stay in cache


DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
TRISTATE = ("auto", "true", "false")
MIXES = ("none", "mixup", "cutmix")
FEATURE_MODES = ("auto", "cache", "online")
MAX_IMAGE_SIZE = 1024  # inception_v3 wants 299; 1024² RGB is 3 MiB per image held in memory
MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take any seed in 0..2**32-1


def register_configs() -> None:
    """Make the schema available to the primary config's defaults list."""
    from kdrun.losses.registry import store_loss_schemas

    store = ConfigStore.instance()
    store.store(name="kdrun_schema", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        store.store(group="schema/data", name=name, node=schema)
    store_loss_schemas(store)


def config_digest(cfg: DictConfig) -> str:
    """Identity of a resolved experiment config: a finished run with the same one is reusable."""
    from omegaconf import OmegaConf

    from kdrun.cache import digest

    return digest(OmegaConf.to_container(cfg, resolve=True))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_ranges(cfg: DictConfig) -> None:
    """Reject values that type-check but cannot work; needs no data and no model."""
    from kdrun.losses import LOSSES, loss_params
    from kdrun.models import is_known_model, model_names
    from kdrun.optimizers import OPTIMIZERS

    _check_resolvable(cfg)
    _require(cfg.shots >= 1, f"shots={cfg.shots} is invalid: shots must be an integer >= 1.")
    _require(cfg.ways >= 2, f"ways={cfg.ways} is invalid: ways must be an integer >= 2.")
    _require(cfg.episodes >= 1, f"episodes={cfg.episodes} is invalid: it must be >= 1.")
    pool = cfg.pool
    _require(
        pool in ("auto", "all")
        or (isinstance(pool, int) and not isinstance(pool, bool) and pool >= 0),
        f"pool={pool!r} is invalid: it must be auto, all or an integer >= 0.",
    )
    sl = cfg.soft_labels
    _require(sl.views >= 0, f"soft_labels.views={sl.views} is invalid: it must be >= 0.")
    _require(
        sl.mix in MIXES,
        f"soft_labels.mix={sl.mix!r} is unknown; choose one of: {', '.join(MIXES)}.",
    )
    _require(
        sl.mix == "none" or sl.views >= 1,
        f"soft_labels.mix={sl.mix} needs soft_labels.views >= 1 (the teacher labels mixed views).",
    )
    _require(sl.mix_alpha > 0, f"soft_labels.mix_alpha={sl.mix_alpha} is invalid: it must be > 0.")
    _require(
        sl.features in FEATURE_MODES,
        f"soft_labels.features={sl.features!r} is unknown; choose one of: "
        f"{', '.join(FEATURE_MODES)}.",
    )
    _require(
        sl.features != "cache" or sl.views >= 1,
        "soft_labels.features=cache needs soft_labels.views >= 1: only replayed views let the "
        "student see the very images whose teacher features were cached.",
    )
    _require(
        sl.feature_cache_mb >= 0,
        f"soft_labels.feature_cache_mb={sl.feature_cache_mb} is invalid: it must be >= 0.",
    )
    for stage in ("teacher", "student"):
        arch = cfg[stage].arch
        _require(
            is_known_model(arch),
            f"{stage}.arch={arch!r} is not a known model; choose one of: "
            f"{', '.join(model_names())}.",
        )
        opt = cfg[stage].optimizer
        _require(
            opt in OPTIMIZERS,
            f"{stage}.optimizer={opt!r} is unknown; choose one of: {', '.join(OPTIMIZERS)}.",
        )
        for key in ("batch_size", "lr"):
            value = cfg[stage][key]
            _require(value > 0, f"{stage}.{key}={value} is invalid: it must be > 0.")
        clip = cfg[stage].grad_clip
        _require(clip >= 0, f"{stage}.grad_clip={clip} is invalid: it must be >= 0.")
        ls = cfg[stage].label_smoothing
        _require(0 <= ls < 1, f"{stage}.label_smoothing={ls} is invalid: it must be in [0, 1).")
    _require(
        cfg.teacher.epochs >= 1 or cfg.teacher.checkpoint,
        f"teacher.epochs={cfg.teacher.epochs} is invalid: it must be >= 1.",
    )
    every = cfg.teacher.checkpoint_every
    _require(every >= 1, f"teacher.checkpoint_every={every} is invalid: it must be >= 1 (epochs).")
    st = cfg.student
    _require(st.steps is None or st.steps >= 1, f"student.steps={st.steps} is invalid: >= 1.")
    _require(st.epochs > 0, f"student.epochs={st.epochs} is invalid: it must be > 0.")
    _require(st.min_steps >= 1, f"student.min_steps={st.min_steps} is invalid: it must be >= 1.")
    _require(
        len(st.curve) >= 1 and all(0 < f <= 1 for f in st.curve),
        f"student.curve={list(st.curve)} is invalid: give fractions of the budget in (0, 1], "
        "e.g. [0.125,0.25,0.5,1.0].",
    )
    _require(
        cfg.loss.name in LOSSES,
        f"loss.name={cfg.loss.name!r} is unknown; choose one of: {', '.join(sorted(LOSSES))}.",
    )
    LOSSES[cfg.loss.name].check(loss_params(cfg.loss))
    dev = cfg.device
    _require(
        dev.type in DEVICE_TYPES,
        f"device.type={dev.type!r} is unknown; choose one of: {', '.join(DEVICE_TYPES)}.",
    )
    _require(
        dev.precision in PRECISIONS,
        f"device.precision={dev.precision!r} is unknown; choose one of: {', '.join(PRECISIONS)}.",
    )
    _require(
        str(dev.channels_last).lower() in TRISTATE,
        f"device.channels_last={dev.channels_last!r} is invalid; choose auto, true or false.",
    )
    _require(dev.threads >= 0, f"device.threads={dev.threads} is invalid: it must be >= 0.")
    aug = cfg.data.augment
    _require(aug.crop_padding >= 0, f"data.augment.crop_padding={aug.crop_padding}: must be >= 0.")
    size = cfg.data.image_size
    _require(
        8 <= size <= MAX_IMAGE_SIZE,
        f"data.image_size={size} is invalid: it must be between 8 and {MAX_IMAGE_SIZE} "
        "(every image is held in memory at this size).",
    )
    _require(cfg.eval_batch_size >= 1, f"eval_batch_size={cfg.eval_batch_size}: must be >= 1.")
    _check_extra_ranges(cfg)


def _check_resolvable(cfg: DictConfig) -> None:
    """A `${...}` that names no key or unset variable, or resolves to the wrong type, fails on
    first access with a traceback; resolve everything once, up front, instead."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "a config value"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{key} cannot be resolved: {reason}.") from None


def _check_extra_ranges(cfg: DictConfig) -> None:
    """Keys whose bad values would otherwise fail deep inside training, or silently do nothing."""
    data_schema = DATA_SCHEMAS.get(cfg.data.source, DataConf)
    unknown = next(_unknown_keys(cfg, Config), None) or next(
        _unknown_keys(cfg.data, data_schema, "data."), None
    )
    _require(
        unknown is None,
        f"{unknown} is not a kdrun config key (added with '+'?); see docs/configuration.md "
        "for every key.",
    )
    for key, value in _float_leaves(OmegaConf.to_container(cfg, resolve=False)):
        _require(math.isfinite(value), f"{key}={value} is invalid: it must be a finite number.")
    for key, value in (
        ("seed", cfg.seed),
        ("teacher.seed", cfg.teacher.seed),
        *(
            [("data.synthetic_seed", cfg.data.synthetic_seed)]
            if "synthetic_seed" in cfg.data
            else []
        ),
    ):
        _require(
            0 <= value <= MAX_SEED,
            f"{key}={value} is invalid: it must be an integer between 0 and {MAX_SEED}.",
        )
    for stage in ("teacher", "student"):
        momentum, decay = cfg[stage].momentum, cfg[stage].weight_decay
        _require(
            0 <= momentum < 1, f"{stage}.momentum={momentum} is invalid: it must be in [0, 1)."
        )
        _require(decay >= 0, f"{stage}.weight_decay={decay} is invalid: it must be >= 0.")
    pad, size = cfg.data.augment.crop_padding, cfg.data.image_size
    _require(
        pad < size,
        f"data.augment.crop_padding={pad} is invalid: it must be below data.image_size={size}.",
    )
    if not str(cfg.cache_dir).strip():
        raise ConfigError(_empty_cache_dir(cfg))


CACHE_ENV = "KDRUN_CACHE_DIR"


def _empty_cache_dir(cfg: DictConfig) -> str:
    """An empty cache_dir usually comes from `KDRUN_CACHE_DIR=""`: name the variable then,
    since the user never typed cache_dir."""
    raw = str(cfg._get_node("cache_dir")._value())
    if CACHE_ENV in raw and os.environ.get(CACHE_ENV) is not None:
        return (
            f"cache_dir is empty because {CACHE_ENV} is set but empty; unset it or give a "
            "directory."
        )
    return "cache_dir is empty: give it a directory path."


def _unknown_keys(cfg: DictConfig, schema: type, prefix: str = "") -> Iterator[str]:
    """Keys a `+key=value` override added that no schema declares (Hydra lets those through)."""
    hints = typing.get_type_hints(schema)
    for key in cfg:
        name = f"{prefix}{key}"
        if key not in hints:
            yield name
            continue
        node = cfg._get_node(key)
        if dataclasses.is_dataclass(hints[key]) and isinstance(node, DictConfig):
            yield from _unknown_keys(node, hints[key], f"{name}.")


def _float_leaves(tree: object, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every float in a config tree, with its dotted key (`nan` and `inf` parse as floats)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _float_leaves(value, f"{prefix}{key}.")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _float_leaves(value, f"{prefix}{i}.")
    elif isinstance(tree, float):
        yield prefix.rstrip("."), tree
