"""Typed schemas for every config group, registered in Hydra's ConfigStore, plus range checks.

Hydra rejects wrong types, unknown keys and unknown options against these schemas before the
task starts; `check_ranges` then rejects values of the right type that make no sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig


class ConfigError(ValueError):
    """A bad setting, reported to the user as one sentence before any work starts."""


@dataclass
class TrainConf:
    """Optimiser settings shared by the teacher and the students (SGD with Nesterov momentum)."""

    arch: str = MISSING
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
    steps: int = 500


@dataclass
class AugmentConf:
    crop_padding: int = 4
    flip: bool = True


@dataclass
class DataConf:
    source: str = MISSING
    root: str | None = None
    download: bool = False
    image_size: int = 32
    augment: AugmentConf = field(default_factory=AugmentConf)
    # Only used by data=synthetic.
    num_classes: int = 10
    train_per_class: int = 500
    test_per_class: int = 100
    synthetic_seed: int = 1234


@dataclass
class LossConf:
    name: str = MISSING
    alpha: float = 0.9
    temperature: float = 4.0


@dataclass
class SoftLabelConf:
    """views=0 labels the clean images; V >= 1 labels V stored augmented views of each image."""

    views: int = 0
    mix: str = "none"
    mix_alpha: float = 1.0


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
    data: DataConf = MISSING
    loss: LossConf = MISSING
    device: DeviceConf = MISSING
    soft_labels: SoftLabelConf = field(default_factory=SoftLabelConf)
    ways: int = 10
    shots: int = 5
    seed: int = 0
    episodes: int = 1
    pool: int = 0
    cache_dir: str = "${oc.env:KDRUN_CACHE_DIR,outputs/cache}"
    eval_batch_size: int = 1000


DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
TRISTATE = ("auto", "true", "false")
MIXES = ("none", "mixup", "cutmix")


def register_configs() -> None:
    """Make the schema available to the primary config's defaults list."""
    ConfigStore.instance().store(name="kdrun_schema", node=Config)


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
    from kdrun.losses import LOSSES
    from kdrun.models import is_known_model, model_names

    _require(cfg.shots >= 1, f"shots={cfg.shots} is invalid: shots must be an integer >= 1.")
    _require(cfg.ways >= 1, f"ways={cfg.ways} is invalid: ways must be an integer >= 1.")
    _require(cfg.episodes >= 1, f"episodes={cfg.episodes} is invalid: it must be >= 1.")
    _require(cfg.pool >= 0, f"pool={cfg.pool} is invalid: it must be >= 0.")
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
    for stage in ("teacher", "student"):
        arch = cfg[stage].arch
        _require(
            is_known_model(arch),
            f"{stage}.arch={arch!r} is not a known model; choose one of: "
            f"{', '.join(model_names())}.",
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
    _require(cfg.student.steps >= 1, f"student.steps={cfg.student.steps} is invalid: >= 1.")
    _require(
        cfg.loss.name in LOSSES,
        f"loss.name={cfg.loss.name!r} is unknown; choose one of: {', '.join(sorted(LOSSES))}.",
    )
    alpha, temp = cfg.loss.alpha, cfg.loss.temperature
    _require(0 <= alpha <= 1, f"loss.alpha={alpha} is invalid: it must be between 0 and 1.")
    _require(temp > 0, f"loss.temperature={temp} is invalid: it must be > 0.")
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
    _require(cfg.data.image_size >= 8, f"data.image_size={cfg.data.image_size}: must be >= 8.")
    _require(cfg.eval_batch_size >= 1, f"eval_batch_size={cfg.eval_batch_size}: must be >= 1.")
