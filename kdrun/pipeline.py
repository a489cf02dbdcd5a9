"""The experiment, top to bottom: data → few-shot episode → teacher → soft labels → students."""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from kdrun.data import ImageDataset, get_source
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import episode_seed, resolve_pool, sample_episode
from kdrun.episode_inputs import EpisodeInputs, RunInputs
from kdrun.errors import ConfigError, RefusedStart
from kdrun.loggers import tracking
from kdrun.losses import Distiller, build_loss
from kdrun.preflight import check_counts, preflight
from kdrun.report.run_record import history_csv, run_metrics
from kdrun.stages.cost import run_costs
from kdrun.stages.evaluation import (
    accuracy_on_validation_split,
    curve_point,
    evaluate_teacher,
    report_on_test_split,
)
from kdrun.stages.export import export_student
from kdrun.stages.soft_labels import SoftLabels, get_soft_labels
from kdrun.stages.student import budget_steps, train_student
from kdrun.stages.teacher import TeacherResult, prepare_teacher
from kdrun.stages.teacher_checkpoint import checkpoint_digest
from kdrun.stages.teacher_features import TeacherFeatures, get_teacher_features
from kdrun.stages.transfer import prepare_transfer
from kdrun.store.cache import (
    ArtifactCache,
    atomic_torch_save,
    atomic_write_text,
    digest,
    tensor_digest,
)
from kdrun.store.code_identity import running_source_digest
from kdrun.store.record import write_record
from kdrun.store.storage import remove_stale_temps
from kdrun.train import TrainingSet, cpu_state_dict

log = logging.getLogger(__name__)

CE = OmegaConf.create({"name": "ce"})


def _run_episode(
    cfg: DictConfig,
    e: int,
    shared: RunInputs,
    pool: int,
    resolved: Distiller,
    out_dir: Path,
    timing: dict[str, float],
) -> tuple[dict, list[dict], str]:
    """One draw of classes and shots: teacher (usually cached), soft labels, student, baseline."""
    dataset = shared.dataset
    seed = episode_seed(cfg.seed, e)
    episode = sample_episode(
        dataset.train.labels,
        dataset.test.labels,
        len(dataset.classes),
        cfg.ways,
        cfg.shots,
        seed,
        pool=pool,
        val_per_class=cfg.data.val_per_class,
    )
    inputs = shared.for_episode(episode)
    start = time.perf_counter()
    teacher = prepare_teacher(cfg.teacher, inputs)
    teacher_report = evaluate_teacher(teacher, inputs, cfg.teacher.tta_flip)
    _add(timing, "teacher", time.perf_counter() - start)
    log.info("teacher: test accuracy %.4f (%s)", teacher_report["test_acc"], teacher.source)

    picture = out_dir / "transfer.png" if e == 0 else None
    made = prepare_transfer(cfg.transfer, teacher, inputs, cfg.student.arch, picture)
    _add(timing, "transfer", made.seconds)
    soft, features = None, None
    distiller = copy.deepcopy(resolved)  # each episode binds its own student's projections
    if not made.online:  # transfer=mix: the teacher labels each step's inputs in the loop
        soft = get_soft_labels(teacher, cfg.soft_labels, inputs, made)
        _add(timing, "soft_labels", soft.seconds)
        features = _teacher_features(cfg, distiller, teacher, soft, inputs)
    if features is not None:
        _add(timing, "teacher_features", features.seconds)
    if not made.online and (features is None or features.mode != "online"):
        teacher.model.cpu()  # the student stage does not run the teacher

    history = list(teacher.history) if teacher.source == "trained" else []
    reports = {"teacher": teacher_report}
    curves: dict[str, list[dict]] = {}
    baseline_source = "trained"
    baseline = build_loss(CE, cfg.student.label_smoothing)
    exported = None
    for stage, method in (("student", distiller), ("baseline", baseline)):
        online = made.training_set if stage == "student" else None
        init_state = None
        if stage == "student" and cfg.student.init == "teacher":
            init_state = cpu_state_dict(teacher.model)
        entry = _train_and_test(
            cfg.student, stage, method, inputs, soft, features, online, init_state
        )
        _add(timing, stage, entry["seconds"])
        _add(timing, "curve", entry["curve_seconds"])  # already inside the stage's seconds
        history += [{**row, "episode": e} for row in entry["history"]]
        history += [{"episode": e, "stage": stage, **p} for p in entry["curve"]]
        reports[stage] = entry["report"]
        if stage == "student":
            student_init = entry.get("init", {"from": "scratch"})
        curves[stage] = entry["curve"]
        if entry.get("cached"):
            baseline_source = "cache"
        if e == 0:
            atomic_torch_save(entry["state_dict"], out_dir / f"{stage}.pt")
        if e == 0 and stage == "student" and cfg.export.name == "onnx":
            start = time.perf_counter()
            test_images = inputs.dataset.test.images[inputs.episode.test_indices]
            n = cfg.export.verify_images
            images = inputs.normalize(test_images[:n].to(inputs.runtime.device)).cpu()
            exported = export_student(
                cfg.export, cfg.student.arch, entry["state_dict"], images, out_dir
            )
            _add(timing, "export", time.perf_counter() - start)
            log.info(
                "export: %s verified in onnxruntime (max |diff| %.2g on %d images, %.2f ms)",
                exported["file"],
                exported["max_abs_diff"],
                exported["verified_images"],
                exported["onnxruntime_latency_ms"],
            )
        log.info(
            "episode %d %s: test accuracy %.4f (%s)",
            e,
            stage,
            entry["report"]["test_acc"],
            "cache" if entry.get("cached") else f"{entry['seconds']:.1f}s",
        )
    record = {
        "episode": e,
        "seed": seed,
        "classes": [dataset.classes[c] for c in episode.classes],
        "shot_indices": episode.shot_indices.tolist(),
        "pool_size": len(episode.pool_indices),
        **reports,
        "kd_gain": reports["student"]["test_acc"] - reports["baseline"]["test_acc"],
        "curves": curves,
        "baseline_source": baseline_source,  # "cache": reused, trained by an earlier run
        "transfer": made.describe(),
        "soft_labels": (
            {
                "hit": soft.hit,
                "bytes": soft.nbytes,
                "views": cfg.soft_labels.views,
                "teacher_on_shots": soft.quality,
            }
            if soft is not None
            else None
        ),
        "teacher_features": features.describe() if features is not None else None,
        "student_init": student_init,
    }
    if exported is not None:
        record["export"] = exported
    return record, history, teacher.source


def _teacher_features(
    cfg: DictConfig,
    distiller: Distiller,
    teacher: TeacherResult,
    soft: SoftLabels,
    inputs: EpisodeInputs,
) -> TeacherFeatures | None:
    """The teacher's targets at the layers preflight paired: cached, or computed online."""
    if not distiller.uses_features:
        return None
    return get_teacher_features(teacher.model, distiller, soft, cfg.soft_labels, inputs)


def _baseline_key(cfg: DictConfig, inputs: EpisodeInputs) -> str:
    """The baseline ignores the teacher, the loss, the pool and the views: sweeps over those share
    one baseline per episode. `cfg` is `student`."""
    dataset, episode = inputs.dataset, inputs.episode
    student = OmegaConf.to_container(cfg)
    for key in ("steps", "epochs", "min_steps"):  # what matters is the budget they resolve to
        del student[key]
    del student["init"]  # the baseline always starts from scratch
    student["budget"] = budget_steps(cfg, len(episode.shot_indices))
    held_out = {"val_per_class": episode.val_per_class} if episode.val_per_class else {}
    return digest(
        {
            **held_out,  # its entry holds val_acc; absent at 0, so older entries stay valid
            "kind": "baseline",
            "v": 2,
            "student": student,
            "data": dataset.identity,
            "classes": episode.classes,
            "shots": tensor_digest(episode.shot_indices),
            "seed": episode.seed,
            "augment": OmegaConf.to_container(inputs.augment),
        }
    )


def _train_and_test(
    cfg: DictConfig,
    stage: str,
    distiller: Distiller,
    inputs: EpisodeInputs,
    soft: SoftLabels | None,
    features: TeacherFeatures | None,
    online: TrainingSet | None = None,
    init_state: dict | None = None,
) -> dict:
    """Train a student (or reuse a cached baseline) and score it on the test split; `cfg` is
    `student`. `online`: the student's inputs when a transfer labels them in the loop."""

    def train_and_test() -> dict:
        trained = train_student(
            cfg,
            distiller,
            inputs,
            soft,
            stage=stage,
            features=features if stage == "student" else None,
            online=online,
            score=lambda model: curve_point(model, inputs),
            init_state=init_state,
        )
        report = report_on_test_split(trained.model, inputs)
        report["batch"] = trained.batch  # what a step held: the table's "steps of B"
        final = {"step": trained.steps, "test_acc": report["test_acc"]}
        if len(inputs.episode.val_indices):
            report["val_acc"] = final["val_acc"] = accuracy_on_validation_split(
                trained.model, inputs
            )
            report["val_images"] = len(inputs.episode.val_indices)
        return {
            "report": report,
            "state_dict": cpu_state_dict(trained.model),
            "history": trained.history,
            "seconds": trained.seconds,
            "curve": [*trained.curve, final],
            "curve_seconds": trained.curve_seconds,
            **({"init": trained.init} if trained.init is not None else {}),
        }

    if stage != "baseline":
        return train_and_test()
    entry, hit = inputs.cache.get_or_build("baseline", _baseline_key(cfg, inputs), train_and_test)
    return {**entry, "seconds": 0.0, "curve_seconds": 0.0, "cached": True} if hit else entry


def _add(timing: dict[str, float], key: str, seconds: float) -> None:
    timing[key] = timing.get(key, 0.0) + seconds


def _load_data(cfg: DictConfig, cache: ArtifactCache) -> tuple[ImageDataset, int]:
    """Decode (or reload) the data set and check the draw against what decoded: unreadable files
    can leave a class short of what the file counts promised."""
    dataset = get_source(cfg.data.source).load(cfg.data, cache)
    n = len(dataset.classes)
    train_counts = torch.bincount(dataset.train.labels, minlength=n).tolist()
    unit = "readable training images"
    pool = resolve_pool(cfg, dataset.classes, train_counts, unit, announce=True)
    check_counts(
        cfg,
        dataset.classes,
        train_counts,
        torch.bincount(dataset.test.labels, minlength=n).tolist(),
        unit=unit,
        pool=pool,
    )
    log.info(
        "data: %s, %d classes; %d-way %d-shot, pool %d per class, %d episode(s)%s",
        cfg.data.source,
        len(dataset.classes),
        cfg.ways,
        cfg.shots,
        pool,
        cfg.episodes,
        f"; {cfg.data.val_per_class} validation images per class held out"
        if cfg.data.val_per_class
        else "",
    )
    return dataset, pool


def input_proof(cfg: DictConfig, data_identity: str | None = None) -> dict:
    """What a finished record must match, beside its config, to be reused: the data's identity
    (the decode cache's fingerprint: paths, sizes, mtimes), the teacher checkpoint's SHA-256
    (a trained teacher's cache key follows from the config and the data), kdrun's version and
    its source code (kdrun.store.code_identity)."""
    from kdrun import __version__

    if data_identity is None:
        data_identity = get_source(cfg.data.source).identity(cfg.data)
    checkpoint = checkpoint_digest(cfg.teacher.checkpoint) if cfg.teacher.checkpoint else None
    return {
        "data": data_identity,
        "teacher_checkpoint": checkpoint,
        "kdrun": __version__,
        "code": running_source_digest(),
    }


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run `episodes` draws; writes history.csv, episode-0 weights and, last, metrics.json."""
    t0 = time.perf_counter()
    running_source_digest()  # the code's identity as it starts, not as it may be at the end
    remove_stale_temps(out_dir, ".*.tmp")  # a killed run's half-written files; never read
    timing: dict[str, float] = {}
    try:
        checked = preflight(cfg)
        runtime = checked.runtime
        log.info("device: %s", runtime.describe())
        cache = ArtifactCache(Path(to_absolute_path(cfg.cache_dir)))
        start = time.perf_counter()
        dataset, pool = _load_data(cfg, cache)
    except ConfigError as exc:
        raise RefusedStart(str(exc)) from exc
    normalize = Normalize(dataset.train.images, runtime.device)
    timing["data"] = time.perf_counter() - start

    shared = RunInputs(dataset, normalize, runtime, cache, cfg.eval_batch_size, cfg.data.augment)
    records, history, sources = [], [], []
    with tracking(cfg, out_dir) as tracker:  # logger=...: an optional copy for a tracker
        for e in range(cfg.episodes):
            record, rows, source = _run_episode(
                cfg, e, shared, pool, checked.distiller, out_dir, timing
            )
            records.append(record)
            history += rows
            sources.append(source)
            tracker.episode(e, record, rows)

        start = time.perf_counter()
        archs = {"teacher": cfg.teacher.arch, "student": cfg.student.arch}
        costs = run_costs(archs, cfg.ways, cfg.data.image_size, cache)
        timing["cost"] = time.perf_counter() - start
        timing["total"] = time.perf_counter() - t0
        metrics = run_metrics(cfg, records, sources[0], pool, timing, shared, costs)
        metrics["out_dir"] = str(out_dir)
        metrics["inputs"] = input_proof(cfg, dataset.identity)
        atomic_write_text(history_csv(history), out_dir / "history.csv")
        record = write_record(out_dir, metrics, cfg)  # last: its checksums cover the files above
        tracker.finish(record, out_dir)
    return record
