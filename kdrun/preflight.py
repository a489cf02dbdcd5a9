"""The one place a run is refused: every check on user input, before any data is decoded or
model trained. Hydra has already checked types and keys against the schemas (config.py); this
checks values, their combinations, the data's class counts and the files a run names."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Iterator
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kdrun.config import (
    DATA_SCHEMAS,
    EXPORT_SCHEMAS,
    LOGGER_SCHEMAS,
    TRANSFER_SCHEMAS,
    Config,
    SynthesisConf,
)
from kdrun.data import SourceInfo, get_source
from kdrun.data.fewshot import resolve_pool, transfer_name
from kdrun.errors import ConfigError
from kdrun.loggers import check_logger
from kdrun.losses import LOSSES, Distiller, build_loss, loss_params
from kdrun.models import build_meta_model, input_problem, is_known_model, model_names
from kdrun.optimizers import OPTIMIZERS
from kdrun.runtime.device import Runtime, resolve_runtime
from kdrun.runtime.memory import Available, available_memory
from kdrun.stages.export import INSTALL_HINT, missing_exporter
from kdrun.stages.teacher import load_checkpoint
from kdrun.store.storage import ensure_writable_dir
from kdrun.transfer import TRANSFERS, build_transfer, transfer_params


@dataclasses.dataclass(frozen=True)
class Checked:
    """What preflight learned on the way: the data's counts, the device, and the distiller with
    its layers already paired (on weightless models: shapes need no weights), so a run resolves
    the method once, here, and each episode only binds a copy to its student."""

    info: SourceInfo
    runtime: Runtime
    distiller: Distiller


def preflight(cfg: DictConfig) -> Checked:
    """Every check that can fail on user input, before any data is decoded or model trained."""
    check_ranges(cfg)
    for stage in ("teacher", "student"):
        problem = input_problem(cfg[stage].arch, cfg.ways, cfg.data.image_size)
        if problem:
            raise ConfigError(
                f"{stage}.arch={cfg[stage].arch} cannot take data.image_size={cfg.data.image_size}"
                f" images ({problem}); pick another data.image_size or {stage}.arch."
            )
    info = get_source(cfg.data.source).describe(cfg.data)
    pool = resolve_pool(cfg, info.classes, info.train_counts)
    check_counts(cfg, info.classes, info.train_counts, pool=pool)
    check_memory(cfg, info, pool, available_memory())
    if cfg.teacher.checkpoint:
        load_checkpoint(cfg.teacher.checkpoint, cfg.teacher.arch, cfg.ways)
    build_transfer(cfg.transfer).check_teacher(
        build_meta_model(cfg.teacher.arch, cfg.ways), cfg.teacher.arch
    )
    distiller = build_loss(cfg.loss, cfg.student.label_smoothing)
    if distiller.uses_features:  # layer names and shapes: weightless models are enough
        size = cfg.data.image_size
        distiller.resolve(
            build_meta_model(cfg.student.arch, cfg.ways),
            build_meta_model(cfg.teacher.arch, cfg.ways),
            torch.zeros(2, 3, size, size),
        )
    ensure_writable_dir(Path(to_absolute_path(cfg.cache_dir)), "cache_dir")
    return Checked(info, resolve_runtime(cfg.device), distiller)


def check_counts(
    cfg: DictConfig,
    classes: list[str],
    train_counts: list[int],
    test_counts: list[int] | None = None,
    unit: str = "training images",
    pool: int = 0,
) -> None:
    """`ways`, `shots` and the resolved `pool` against the data: from file counts before
    decoding, and again from the decoded images (unreadable files are skipped, so a class can
    end up short)."""
    n = len(classes)
    if cfg.ways > n:
        raise ConfigError(f"ways={cfg.ways} is invalid: the data set has {n} classes (2..{n}).")
    fewest = min(train_counts)
    val = cfg.data.val_per_class
    if cfg.shots + pool + val > fewest:
        name = classes[train_counts.index(fewest)]
        key = f"shots={cfg.shots}" + (f" with pool={pool}" if pool else "")
        key += f" and data.val_per_class={val}" if val else ""
        parts = " + ".join(["shots"] + ["pool"] * bool(pool) + ["val_per_class"] * bool(val))
        need = f"; {parts} must be <= {fewest}" if pool or val else ""
        raise ConfigError(f"{key} is invalid: class {name!r} has only {fewest} {unit}{need}.")
    empty = [c for c, k in zip(classes, test_counts or [], strict=False) if k == 0]
    if empty:
        raise ConfigError(
            f"data.root={cfg.data.root}: class(es) {', '.join(empty)} have no readable test "
            "images; every class needs test images for evaluation."
        )


VIEW_PARAM_BYTES = 8 + 8 + 1 + 8 + 4 + 4 * 8  # dy, dx, flip, partner, lam, box (views.py)
FLOAT_BATCH_COPIES = 4  # a batch's float copies at once: cropped, normalised, mixed, autocast


def memory_terms(cfg: DictConfig, info: SourceInfo, pool: int) -> dict[str, int]:
    """What a run holds in memory at least, in bytes, by the key that sets each part: the
    decoded set, the soft labels with their view parameters, synthesised images, the feature
    cache and the float batches. Activations and weights are left out: a lower bound, so a
    refusal is never a false alarm."""
    pixels = 3 * cfg.data.image_size**2
    test = info.test_counts or []
    decoded = (sum(info.train_counts) + sum(test)) * pixels
    name = transfer_name(cfg)
    schema = TRANSFER_SCHEMAS.get(name)
    made = cfg.transfer.images if schema and issubclass(schema, SynthesisConf) else 0
    labelled = cfg.ways * (cfg.shots + pool) + made
    views = cfg.soft_labels.views
    per_image = max(1, views) * cfg.ways * 2 + views * VIEW_PARAM_BYTES  # fp16 logits
    features = 0
    if LOSSES[cfg.loss.name].uses_features and cfg.soft_labels.features == "auto" and views:
        features = int(cfg.soft_labels.feature_cache_mb * 2**20)
    batch = max(cfg.teacher.batch_size, cfg.student.batch_size, cfg.eval_batch_size)
    batch_key = {
        cfg.teacher.batch_size: "teacher.batch_size",
        cfg.student.batch_size: "student.batch_size",
        cfg.eval_batch_size: "eval_batch_size",
    }[batch]
    soft_key = "soft_labels.views" if views > 1 else ("pool" if pool else "shots")
    return {
        "data.image_size": decoded,
        soft_key: labelled * per_image,
        "transfer.images": made * pixels,
        "soft_labels.feature_cache_mb": features,
        batch_key: batch * pixels * 4 * FLOAT_BATCH_COPIES,
    }


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_memory(cfg: DictConfig, info: SourceInfo, pool: int, available: Available) -> None:
    """Refuse, before decoding anything, a run whose lower-bound estimate exceeds the memory
    this process may still take; name the key behind the largest part."""
    if available.source == "unknown":
        return
    terms = memory_terms(cfg, info, pool)
    need = sum(terms.values())
    if need <= available.nbytes:
        return
    key = max(terms, key=terms.__getitem__)
    value = f"{key}={OmegaConf.select(cfg, key)}"
    parts = ", ".join(f"{k} {_gib(v)}" for k, v in terms.items() if v)
    raise ConfigError(
        f"{value} needs more memory than this machine has: the run would hold at least "
        f"{_gib(need)} ({parts}), but only {_gib(available.nbytes)} is available "
        f"({available.source}). Lower {key} (the largest part), or run where more memory is "
        "free."
    )


DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
TRISTATE = ("auto", "true", "false")
MIXES = ("none", "mixup", "cutmix")
FEATURE_MODES = ("auto", "cache", "online")
MAX_IMAGE_SIZE = 1024  # inception_v3 wants 299; 1024² RGB is 3 MiB per image held in memory
MAX_SEED = 2**32 - 1  # numpy's and torch's generators both take any seed in 0..2**32-1


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def check_ranges(cfg: DictConfig) -> None:
    """Reject values that type-check but cannot work; needs no data and no model."""

    _check_resolvable(cfg)
    _require(cfg.shots >= 1, f"shots={cfg.shots} is invalid: shots must be an integer >= 1.")
    _require(cfg.ways >= 2, f"ways={cfg.ways} is invalid: ways must be an integer >= 2.")
    _require(cfg.episodes >= 1, f"episodes={cfg.episodes} is invalid: it must be >= 1.")
    val = cfg.data.val_per_class
    _require(val >= 0, f"data.val_per_class={val} is invalid: it must be an integer >= 0.")
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
    _require(
        st.init in ("scratch", "teacher"),
        f"student.init={st.init!r} is unknown; choose scratch or teacher.",
    )
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
    check_transfer(cfg)
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
    cap = cfg.data.max_pixels
    _require(
        cap >= size * size,
        f"data.max_pixels={cap} is invalid: it must be at least data.image_size squared "
        f"({size * size}), or every image would be skipped.",
    )
    _require(cfg.eval_batch_size >= 1, f"eval_batch_size={cfg.eval_batch_size}: must be >= 1.")
    _check_extra_ranges(cfg)
    _check_export(cfg)
    check_logger(cfg.logger.name)  # last: it imports the tracker's library


def check_transfer(cfg: DictConfig) -> None:
    """transfer=...: a known source, its keys in range, and no other key saying otherwise."""
    name = transfer_name(cfg)
    _require(
        name in TRANSFERS,
        f"transfer={name!r} is unknown; choose one of: {', '.join(TRANSFERS)}.",
    )
    source = TRANSFERS[name]
    source.check(transfer_params(cfg.transfer))
    _require(
        source.uses_pool or cfg.pool in ("auto", 0),
        f"pool={cfg.pool} draws real unlabelled images, but transfer={name} uses no real image "
        "beyond the shots; set pool=0 (an experiment may have set it), or use transfer=pool to "
        "distil on a pool.",
    )
    if source.online:
        _require(
            cfg.soft_labels.mix == "none",
            f"soft_labels.mix={cfg.soft_labels.mix} describes cached views, but transfer=mix "
            "labels fresh mixes in the loop; say how to mix with transfer.mix "
            "(mixup, cutmix or both).",
        )
        distiller = LOSSES[cfg.loss.name]
        _require(
            not distiller.uses_features,
            f"loss={cfg.loss.name} distils the teacher's features, which transfer=mix does not "
            "compute in its loop; use a logit method (kd, dist, dkd) with transfer=mix, or "
            "transfer=shots with soft_labels.views and soft_labels.mix.",
        )


EXPORTS = tuple(EXPORT_SCHEMAS)


def _check_export(cfg: DictConfig) -> None:
    """export=onnx needs onnx and onnxruntime (the reader that verifies the file)."""
    ex = cfg.export
    _require(ex.name in EXPORTS, f"export={ex.name!r} is unknown; choose one of: none, onnx.")
    if ex.name != "onnx":
        return
    missing = missing_exporter()
    _require(
        missing is None,
        f"export=onnx needs the {missing} package, which is not installed: "
        f"{INSTALL_HINT} (or choose export=none).",
    )
    _require(7 <= ex.opset <= 25, f"export.opset={ex.opset} is invalid: it must be in 7..25.")
    _require(ex.tolerance > 0, f"export.tolerance={ex.tolerance} is invalid: it must be > 0.")
    _require(ex.verify_images >= 1, f"export.verify_images={ex.verify_images}: it must be >= 1.")


def check_search(cfg: DictConfig, searched: list[str]) -> None:
    """A search selects on what the run returns, the student's mean val_acc; without a
    validation split there is nothing to select on but the test split, so refuse it."""
    if "data.val_per_class" in searched:
        raise ConfigError(
            "hydra.sweeper.params searches data.val_per_class: every trial must be scored on the "
            "same validation images (and share one teacher); fix it, e.g. data.val_per_class=50."
        )
    if cfg.data.val_per_class < 1:
        raise ConfigError(
            f"data.val_per_class={cfg.data.val_per_class} cannot drive a search: the objective "
            "is the student's mean val_acc over the search episodes, and without a validation "
            "split the only accuracy left to select on is the test split's, which would make "
            "every reported test accuracy of the winner optimistic. Hold out labelled training "
            "images with data.val_per_class >= 1 (hparams_search=kd_optuna sets 50), and report "
            "the winner on fresh episodes (kdrun-winner SWEEP_DIR; see docs/search.md)."
        )


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
    unknown = next(_unknown_keys(cfg, Config), None)
    if unknown is None and cfg.data.source in DATA_SCHEMAS:  # an unknown source is named later
        unknown = next(_unknown_keys(cfg.data, DATA_SCHEMAS[cfg.data.source], "data."), None)
    if unknown is None and cfg.export.name in EXPORT_SCHEMAS:
        unknown = next(_unknown_keys(cfg.export, EXPORT_SCHEMAS[cfg.export.name], "export."), None)
    if unknown is None and cfg.logger.name in LOGGER_SCHEMAS:
        unknown = next(_unknown_keys(cfg.logger, LOGGER_SCHEMAS[cfg.logger.name], "logger."), None)
    name = transfer_name(cfg)
    if unknown is None and name in TRANSFER_SCHEMAS and "transfer" in cfg:
        unknown = next(_unknown_keys(cfg.transfer, TRANSFER_SCHEMAS[name], "transfer."), None)
    _require(
        unknown is None,
        f"{unknown} is not a kdrun config key (added with '+'?); see docs/configuration.md "
        "for every key.",
    )
    for key, value in _float_leaves(OmegaConf.to_container(cfg, resolve=False)):
        _require(math.isfinite(value), f"{key}={value} is invalid: it must be a finite number.")
    seeds = {"seed": cfg.seed, "teacher.seed": cfg.teacher.seed}
    if "synthetic_seed" in cfg.data:  # only data=synthetic's schema has it
        seeds["data.synthetic_seed"] = cfg.data.synthetic_seed
    for key, value in seeds.items():
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
