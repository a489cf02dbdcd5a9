"""Typed schemas for every config group, registered in Hydra's ConfigStore: the one home of
every default.

Hydra rejects wrong types, unknown keys and unknown options against these schemas before the
task starts; kdrun/preflight.py then rejects values of the right type that make no sense.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


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
    # scratch | teacher: the distilled student starts from every teacher tensor whose name and
    # shape match (a truncated copy within the CIFAR ResNets); the CE baseline starts from scratch
    init: str = "scratch"


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
    # Images of more pixels are skipped with a warning, not decoded at full size before the
    # resize (PIL's own bomb limit, ~89 million, is far above what a folder of photos needs).
    max_pixels: int = 16_777_216  # 4096 x 4096
    augment: AugmentConf = field(default_factory=AugmentConf)
    # Labelled training images per class held out of every episode's shots and pool and of the
    # teacher's training set, scored as val_acc: what a search (hparams_search=...) selects on.
    val_per_class: int = 0


@dataclass
class SyntheticDataConf(DataConf):
    """data=synthetic's own keys: `data=cifar10 data.num_classes=5` is an unknown key."""

    num_classes: int = 10
    train_per_class: int = 200
    test_per_class: int = 100
    synthetic_seed: int = 1234


DATA_SCHEMAS = {"cifar10": DataConf, "folder": DataConf, "synthetic": SyntheticDataConf}


@dataclass
class LossSchema:
    """Fields every method has; a method's schema subclasses it with its own parameters."""

    name: str = MISSING


@dataclass
class KDConf(LossSchema):
    alpha: float = 0.9
    temperature: float = 4.0


@dataclass
class DKDConf(LossSchema):
    ce_weight: float = 1.0
    alpha: float = 1.0
    beta: float = 8.0
    temperature: float = 4.0
    warmup: float = 0.0833  # the KD weight ramps up over the first ~20/240 (the paper's epochs)


@dataclass
class DISTConf(LossSchema):
    ce_weight: float = 1.0
    beta: float = 1.0  # inter-class relation
    gamma: float = 1.0  # intra-class relation
    temperature: float = 4.0


@dataclass
class FitNetConf(LossSchema):
    ce_weight: float = 1.0
    feature_weight: float = 100.0
    student_layer: str = "auto"  # the model's "hint" layer, or a module name
    teacher_layer: str = "auto"


@dataclass
class ATConf(LossSchema):
    ce_weight: float = 1.0
    beta: float = 1000.0
    p: float = 2.0
    student_layers: str = "auto"  # the model's "attention" stages, or comma-separated names
    teacher_layers: str = "auto"


@dataclass
class RKDConf(LossSchema):
    ce_weight: float = 1.0
    distance_weight: float = 25.0
    angle_weight: float = 50.0
    student_layer: str = "auto"  # the model's "embedding" layer, or a module name
    teacher_layer: str = "auto"


# Each method's `loss.*` keys; kdrun/losses/<name>.py implements it. They live here, not
# beside the method, because composing a config (`kdrun --help`) must not import torch.
LOSS_SCHEMAS: dict[str, type[LossSchema]] = {
    "ce": LossSchema,
    "kd": KDConf,
    "dkd": DKDConf,
    "dist": DISTConf,
    "fitnet": FitNetConf,
    "at": ATConf,
    "rkd": RKDConf,
}


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
class TransferSchema:
    """Where the student's distillation inputs come from, beyond its shots (kdrun/transfer/)."""

    name: str = MISSING


@dataclass
class MixTransferConf(TransferSchema):
    """Function matching: every step mixes fresh crops of the shots; the teacher labels them."""

    mix: str = "both"  # mixup | cutmix | both (each batch draws one of the two)
    mix_alpha: float = 1.0  # Beta(a, a) mixing weights
    images: int = 10000  # mixes one pass of the student sees: student.epochs counts these


@dataclass
class SynthesisConf(TransferSchema):
    """What inversion and generator share: how many images, in batches, at what cost each."""

    images: int = 2000  # images to synthesise (cached, then labelled like pool images)
    batch_size: int = 200  # images synthesised together (one cache entry: the resume unit)
    steps: int = 200  # optimisation steps per batch
    lr: float = 0.1  # Adam's step size on the pixels (inversion) or the generator
    bn_weight: float = 1.0  # DeepInversion's BatchNorm-statistics term
    ce_weight: float = 1.0  # cross-entropy of the teacher's logits to each image's target class
    adversarial_weight: float = 0.0  # seek images where a proxy student disagrees with the teacher
    proxy_steps: int = 20  # proxy-student KD steps after each batch (when adversarial_weight > 0)


@dataclass
class InversionConf(SynthesisConf):
    tv_weight: float = 1e-4  # total-variation prior (smooth images)
    l2_weight: float = 1e-5  # L2 prior on the pixels
    init: str = "shots"  # shots: start from noisy crops of a shot of the target class | noise
    init_noise: float = 0.5  # std of the Gaussian noise added to the start (normalised units)
    jitter: int = 2  # random shift (pixels) and flip each step, as in DeepInversion


@dataclass
class GeneratorConf(SynthesisConf):
    batch_size: int = 128
    steps: int = 20  # generator updates per generated batch
    lr: float = 1e-3
    adversarial_weight: float = 1.0  # DFAD/ZSKT: the generator seeks student-teacher disagreement
    latent: int = 128  # noise dimensions (concatenated with a class embedding)


# Each source's `transfer.*` keys; kdrun/transfer/<name>.py implements it.
TRANSFER_SCHEMAS: dict[str, type[TransferSchema]] = {
    "pool": TransferSchema,
    "shots": TransferSchema,
    "mix": MixTransferConf,
    "inversion": InversionConf,
    "generator": GeneratorConf,
}


@dataclass
class DeviceConf:
    type: str = "auto"
    precision: str = "auto"
    channels_last: str = "auto"
    threads: int = 0
    compile: bool = False  # torch.compile the training step's model (worth it on long GPU runs)


@dataclass
class LoggerConf:
    """logger=none: metrics.json, history.csv and the summaries are all a run writes."""

    name: str = MISSING


@dataclass
class TensorBoardConf(LoggerConf):
    # None: <run dir>/tensorboard, or <sweep dir>/tensorboard/<job> so a sweep is one log dir
    log_dir: str | None = None


@dataclass
class MLflowConf(LoggerConf):
    # A local SQLite store unless MLFLOW_TRACKING_URI or this key names another (a server URL)
    tracking_uri: str = "${oc.env:MLFLOW_TRACKING_URI,sqlite:///outputs/mlflow.db}"
    # None: "kdrun" for single runs; a multirun's own sweep dir, so each sweep is one experiment
    experiment_name: str | None = None


LOGGER_SCHEMAS = {"none": LoggerConf, "tensorboard": TensorBoardConf, "mlflow": MLflowConf}


@dataclass
class ExportConf:
    """export=none: student.pt (a state dict for kdrun's model code) is all a run saves."""

    name: str = MISSING


@dataclass
class OnnxExportConf(ExportConf):
    """export=onnx: student.onnx beside student.pt, verified in onnxruntime on test images."""

    opset: int = 17
    # Largest |onnxruntime - PyTorch| logit difference accepted, relative to the largest |logit|
    tolerance: float = 1e-4
    verify_images: int = 64  # test images compared (episode 0's test split)


EXPORT_SCHEMAS = {"none": ExportConf, "onnx": OnnxExportConf}


@dataclass
class Config:
    teacher: TeacherConf = MISSING
    student: StudentConf = MISSING
    data: Any = MISSING  # typed by its source's schema (DATA_SCHEMAS)
    loss: Any = MISSING  # typed by each method's own schema (LOSS_SCHEMAS)
    device: DeviceConf = MISSING
    logger: Any = MISSING  # typed by its option's schema (LOGGER_SCHEMAS)
    transfer: Any = MISSING  # typed by its source's schema (TRANSFER_SCHEMAS)
    export: Any = MISSING  # typed by its option's schema (EXPORT_SCHEMAS)
    soft_labels: SoftLabelConf = field(default_factory=SoftLabelConf)
    ways: int = 10  # N: classes per few-shot task (all ten when 10)
    shots: int = 5  # K: labelled training images per class for the student
    seed: int = 0  # draws the classes and shots, and seeds the students
    episodes: int = 1  # independent draws of classes and shots; metrics report mean ± 95% CI
    # transfer=pool's unlabelled training images per class for the student: an integer, "auto"
    # (500 capped to what the smallest class has left after the shots) or "all" (everything the
    # smallest class has left); resolved by fewshot.resolve_pool. pool=0 means transfer=shots;
    # every other transfer uses no real image beyond the shots (pool resolves to 0).
    pool: Any = "auto"
    cache_dir: str = "${oc.env:KDRUN_CACHE_DIR,outputs/cache}"
    eval_batch_size: int = 200  # CPU inference ~35% faster than 1000: activations stay in cache


def schema_name(group: str, option: str) -> str:
    """What conf/<group>/<option>.yaml extends: a config at the top of the store, not in a
    group, so that `kdrun --help` lists only groups a user picks from."""
    return f"kdrun_schema_{group}_{option}"


def register_configs() -> None:
    """Make the schemas available to the config's defaults lists (no torch imported)."""
    store = ConfigStore.instance()
    store.store(name="kdrun_schema", node=Config)
    for group, schemas in (
        ("data", DATA_SCHEMAS),
        ("loss", LOSS_SCHEMAS),
        ("logger", LOGGER_SCHEMAS),
        ("transfer", TRANSFER_SCHEMAS),
        ("export", EXPORT_SCHEMAS),
    ):
        for option, schema in schemas.items():
            store.store(name=schema_name(group, option), node=schema)


def config_digest(cfg: DictConfig) -> str:
    """Identity of a resolved experiment config: a finished run with the same one is reusable."""
    from kdrun.store.cache import digest  # imports torch: the schemas themselves must not

    return digest(OmegaConf.to_container(cfg, resolve=True))
