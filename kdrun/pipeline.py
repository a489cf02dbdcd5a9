"""The experiment, top to bottom: data → few-shot episode → teacher → soft labels → students."""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path

import torch
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from kdrun.cache import (
    ArtifactCache,
    atomic_torch_save,
    atomic_write_text,
    digest,
    tensor_digest,
)
from kdrun.config import config_digest
from kdrun.convergence import verdict
from kdrun.data import ImageDataset, get_source
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import Episode, episode_seed, resolve_pool, sample_episode
from kdrun.device import Runtime
from kdrun.losses import Distiller, build_loss
from kdrun.metrics import aggregate_reports, classification_report, mean_ci
from kdrun.models import build_meta_model
from kdrun.preflight import check_counts, preflight
from kdrun.record import write_record
from kdrun.soft_labels import SoftLabels, get_soft_labels
from kdrun.storage import remove_stale_temps
from kdrun.student import budget_key, budget_steps, train_student
from kdrun.teacher import TeacherResult, prepare_teacher
from kdrun.teacher_features import TeacherFeatures, get_teacher_features
from kdrun.train import cpu_state_dict, predict

log = logging.getLogger(__name__)

CE = OmegaConf.create({"name": "ce"})


def _evaluate_teacher(
    teacher: TeacherResult,
    dataset: ImageDataset,
    episode: Episode,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
    batch_size: int,
    tta_flip: bool,
) -> dict:
    """The teacher's test scores, cached beside it so a repeated run recomputes nothing."""
    key = digest(
        {
            "kind": "teacher_eval",
            "teacher": teacher.identity,
            "data": dataset.identity,
            "classes": episode.classes,
            "tta_flip": tta_flip,
        }
    )
    entry, _ = cache.get_or_build(
        "teacher_eval",
        key,
        lambda: {
            "report": _test_report(
                teacher.model, dataset, episode, normalize, runtime, batch_size, tta_flip
            )
        },
    )
    return dict(entry["report"])


def _test_report(
    model, dataset, episode, normalize, runtime, batch_size, tta_flip: bool = False
) -> dict:
    images = dataset.test.images[episode.test_indices]
    logits = predict(model, images, normalize, runtime, batch_size)
    if tta_flip:
        logits = (logits + predict(model, images.flip(3), normalize, runtime, batch_size)) / 2
    names = [dataset.classes[c] for c in episode.classes]
    return classification_report(logits, episode.test_labels, names)


def _history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["episode", "stage", "epoch", "step", "loss", "train_acc", "lr", "seconds", "test_acc"]
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _run_episode(
    cfg: DictConfig,
    e: int,
    dataset: ImageDataset,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
    out_dir: Path,
    timing: dict[str, float],
    pool: int,
) -> tuple[dict, list[dict], str]:
    """One draw of classes and shots: teacher (usually cached), soft labels, student, baseline."""
    seed = episode_seed(cfg.seed, e)
    episode = sample_episode(
        dataset.train.labels,
        dataset.test.labels,
        len(dataset.classes),
        cfg.ways,
        cfg.shots,
        seed,
        pool=pool,
    )
    start = time.perf_counter()
    teacher = prepare_teacher(
        cfg.teacher, cfg.data.augment, dataset, episode, normalize, runtime, cache
    )
    teacher_report = _evaluate_teacher(
        teacher,
        dataset,
        episode,
        normalize,
        runtime,
        cache,
        cfg.eval_batch_size,
        cfg.teacher.tta_flip,
    )
    _add(timing, "teacher", time.perf_counter() - start)
    log.info("teacher: test accuracy %.4f (%s)", teacher_report["test_acc"], teacher.source)

    soft = get_soft_labels(
        teacher,
        dataset,
        episode,
        cfg.soft_labels,
        cfg.data.augment,
        normalize,
        runtime,
        cache,
        cfg.eval_batch_size,
    )
    _add(timing, "soft_labels", soft.seconds)
    distiller = build_loss(cfg.loss, cfg.student.label_smoothing)
    features = _teacher_features(cfg, distiller, teacher, dataset, soft, normalize, runtime, cache)
    if features is not None:
        _add(timing, "teacher_features", features.seconds)
    if features is None or features.mode != "online":
        teacher.model.cpu()  # the student stage does not run the teacher

    history = list(teacher.history) if teacher.source == "trained" else []
    reports = {"teacher": teacher_report}
    curves: dict[str, list[dict]] = {}
    baseline = build_loss(CE, cfg.student.label_smoothing)
    for stage, method in (("student", distiller), ("baseline", baseline)):
        entry = _train_and_test(
            cfg, stage, method, dataset, episode, soft, normalize, runtime, cache, features
        )
        _add(timing, stage, entry["seconds"])
        _add(timing, "curve", entry["curve_seconds"])  # already inside the stage's seconds
        history += [{**row, "episode": e} for row in entry["history"]]
        history += [
            {"episode": e, "stage": stage, "step": p["step"], "test_acc": p["test_acc"]}
            for p in entry["curve"]
        ]
        reports[stage] = entry["report"]
        curves[stage] = entry["curve"]
        if e == 0:
            atomic_torch_save(entry["state_dict"], out_dir / f"{stage}.pt")
        log.info(
            "episode %d %s: test accuracy %.4f (%.1fs)",
            e,
            stage,
            entry["report"]["test_acc"],
            entry["seconds"],
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
        "soft_labels": {"hit": soft.hit, "bytes": soft.nbytes, "views": cfg.soft_labels.views},
        "teacher_features": features.describe() if features is not None else None,
    }
    return record, history, teacher.source


def _teacher_features(
    cfg: DictConfig,
    distiller: Distiller,
    teacher: TeacherResult,
    dataset: ImageDataset,
    soft: SoftLabels,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
) -> TeacherFeatures | None:
    """Pair the method's layers on both networks, then cache the teacher's or run it online."""
    if not distiller.uses_features:
        return None
    sample = normalize(dataset.train.images[:2].to(runtime.device))
    distiller.resolve(build_meta_model(cfg.student.arch, cfg.ways), teacher.model, sample)
    return get_teacher_features(
        teacher.model,
        distiller,
        dataset,
        soft,
        cfg.soft_labels,
        cfg.data.augment.crop_padding,
        normalize,
        runtime,
        cache,
        cfg.eval_batch_size,
        sample,
    )


def _baseline_key(cfg: DictConfig, dataset: ImageDataset, episode: Episode) -> str:
    """The baseline ignores the teacher, the loss, the pool and the views: sweeps over those share
    one baseline per episode."""
    student = OmegaConf.to_container(cfg.student)
    for key in ("steps", "epochs", "min_steps"):  # what matters is the budget they resolve to
        del student[key]
    student["budget"] = budget_steps(cfg.student, len(episode.shot_indices))
    return digest(
        {
            "kind": "baseline",
            "v": 2,
            "student": student,
            "data": dataset.identity,
            "classes": episode.classes,
            "shots": tensor_digest(episode.shot_indices),
            "seed": episode.seed,
            "augment": OmegaConf.to_container(cfg.data.augment),
        }
    )


def _train_and_test(
    cfg: DictConfig,
    stage: str,
    distiller: Distiller,
    dataset: ImageDataset,
    episode: Episode,
    soft: SoftLabels,
    normalize: Normalize,
    runtime: Runtime,
    cache: ArtifactCache,
    features: TeacherFeatures | None,
) -> dict:
    """Train a student (or reuse a cached baseline) and score it on the test split."""

    test_images = dataset.test.images[episode.test_indices]

    def score(model) -> float:
        logits = predict(model, test_images, normalize, runtime, cfg.eval_batch_size)
        return float((logits.argmax(1) == episode.test_labels).float().mean())

    def train_and_test() -> dict:
        trained = train_student(
            cfg.student,
            distiller,
            cfg.data.augment,
            dataset,
            episode,
            soft,
            normalize,
            runtime,
            episode.seed,
            stage,
            features if stage == "student" else None,
            score,
        )
        report = _test_report(
            trained.model, dataset, episode, normalize, runtime, cfg.eval_batch_size
        )
        final = {"step": trained.steps, "test_acc": report["test_acc"]}
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
    entry, hit = cache.get_or_build(
        "baseline", _baseline_key(cfg, dataset, episode), train_and_test
    )
    return {**entry, "seconds": 0.0, "curve_seconds": 0.0} if hit else entry


def _add(timing: dict[str, float], key: str, seconds: float) -> None:
    timing[key] = timing.get(key, 0.0) + seconds


def run(cfg: DictConfig, out_dir: Path) -> dict:
    """Run `episodes` draws; writes history.csv, episode-0 weights and, last, metrics.json."""
    t0 = time.perf_counter()
    remove_stale_temps(out_dir, ".*.tmp")  # a killed run's half-written files; never read
    _, runtime = preflight(cfg)
    log.info("device: %s", runtime.describe())
    cache = ArtifactCache(Path(to_absolute_path(cfg.cache_dir)))
    timing: dict[str, float] = {}

    start = time.perf_counter()
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
    normalize = Normalize(dataset.train.images, runtime.device)
    timing["data"] = time.perf_counter() - start
    log.info(
        "data: %s, %d classes; %d-way %d-shot, pool %d per class, %d episode(s)",
        cfg.data.source,
        len(dataset.classes),
        cfg.ways,
        cfg.shots,
        pool,
        cfg.episodes,
    )

    records, history, sources = [], [], []
    for e in range(cfg.episodes):
        record, rows, source = _run_episode(
            cfg, e, dataset, normalize, runtime, cache, out_dir, timing, pool
        )
        records.append(record)
        history += rows
        sources.append(source)

    gain = mean_ci([r["kd_gain"] for r in records])
    convergence = {
        stage: verdict([r["curves"][stage] for r in records], budget_key(cfg.student))
        for stage in ("student", "baseline")
    }
    for stage, v in convergence.items():
        if v["converged"] is False:
            log.warning("%s %s", stage, v["note"])
    timing["total"] = time.perf_counter() - t0
    metrics = {
        "teacher": {
            **aggregate_reports([r["teacher"] for r in records]),
            "source": sources[0],
            "arch": cfg.teacher.arch,
            "epochs": None if sources[0] == "checkpoint" else cfg.teacher.epochs,
        },
        "student": {
            **aggregate_reports([r["student"] for r in records]),
            "arch": cfg.student.arch,
            "loss": cfg.loss.name,
            "convergence": convergence["student"],
        },
        "baseline": {
            **aggregate_reports([r["baseline"] for r in records]),
            "arch": cfg.student.arch,
            "loss": "ce",
            "convergence": convergence["baseline"],
        },
        "kd_gain": gain["mean"],
        "kd_gain_std": gain["std"],
        "kd_gain_ci95": gain["ci95"],
        "setting": {
            "ways": cfg.ways,
            "shots": cfg.shots,
            "seed": cfg.seed,
            "episodes": cfg.episodes,
            "pool": pool,
            "pool_requested": cfg.pool,
            "views": cfg.soft_labels.views,
            "mix": cfg.soft_labels.mix,
        },
        "episodes": records,
        "timing": {k: round(v, 3) for k, v in timing.items()},
        "cache": cache.summary(),
        "device": runtime.describe(),
        "out_dir": str(out_dir),
        "config_digest": config_digest(cfg),
    }
    atomic_write_text(_history_csv(history), out_dir / "history.csv")
    return write_record(out_dir, metrics, cfg)  # last: its checksums cover the files above
