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
from kdrun.stages.evaluation import (
    accuracy_on_validation_split,
    curve_point,
    evaluate_teacher,
    report_on_test_split,
)
from kdrun.stages.soft_labels import SoftLabels, get_soft_labels
from kdrun.stages.student import budget_steps, train_student
from kdrun.stages.teacher import TeacherResult, prepare_teacher
from kdrun.stages.teacher_features import TeacherFeatures, get_teacher_features
from kdrun.store.cache import (
    ArtifactCache,
    atomic_torch_save,
    atomic_write_text,
    digest,
    tensor_digest,
)
from kdrun.store.record import write_record
from kdrun.store.storage import remove_stale_temps
from kdrun.train import cpu_state_dict

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

    soft = get_soft_labels(teacher, cfg.soft_labels, inputs)
    _add(timing, "soft_labels", soft.seconds)
    distiller = copy.deepcopy(resolved)  # each episode binds its own student's projections
    features = _teacher_features(cfg, distiller, teacher, soft, inputs)
    if features is not None:
        _add(timing, "teacher_features", features.seconds)
    if features is None or features.mode != "online":
        teacher.model.cpu()  # the student stage does not run the teacher

    history = list(teacher.history) if teacher.source == "trained" else []
    reports = {"teacher": teacher_report}
    curves: dict[str, list[dict]] = {}
    baseline_source = "trained"
    baseline = build_loss(CE, cfg.student.label_smoothing)
    for stage, method in (("student", distiller), ("baseline", baseline)):
        entry = _train_and_test(cfg.student, stage, method, inputs, soft, features)
        _add(timing, stage, entry["seconds"])
        _add(timing, "curve", entry["curve_seconds"])  # already inside the stage's seconds
        history += [{**row, "episode": e} for row in entry["history"]]
        history += [{"episode": e, "stage": stage, **p} for p in entry["curve"]]
        reports[stage] = entry["report"]
        curves[stage] = entry["curve"]
        if entry.get("cached"):
            baseline_source = "cache"
        if e == 0:
            atomic_torch_save(entry["state_dict"], out_dir / f"{stage}.pt")
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
        "soft_labels": {"hit": soft.hit, "bytes": soft.nbytes, "views": cfg.soft_labels.views},
        "teacher_features": features.describe() if features is not None else None,
    }
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
    soft: SoftLabels,
    features: TeacherFeatures | None,
) -> dict:
    """Train a student (or reuse a cached baseline) and score it on the test split; `cfg` is
    `student`."""

    def train_and_test() -> dict:
        trained = train_student(
            cfg,
            distiller,
            inputs,
            soft,
            stage=stage,
            features=features if stage == "student" else None,
            score=lambda model: curve_point(model, inputs),
        )
        report = report_on_test_split(trained.model, inputs)
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


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run `episodes` draws; writes history.csv, episode-0 weights and, last, metrics.json."""
    t0 = time.perf_counter()
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

        timing["total"] = time.perf_counter() - t0
        metrics = run_metrics(cfg, records, sources[0], pool, timing, shared)
        metrics["out_dir"] = str(out_dir)
        atomic_write_text(history_csv(history), out_dir / "history.csv")
        record = write_record(out_dir, metrics, cfg)  # last: its checksums cover the files above
        tracker.finish(record, out_dir)
    return record
