"""The run's record: what metrics.json holds, assembled from the episodes' records (scores,
curves, convergence verdicts) and the run's settings; and history.csv's rows."""

from __future__ import annotations

import csv
import io
import logging

from omegaconf import DictConfig

from kdrun.config import config_digest
from kdrun.data.fewshot import transfer_name
from kdrun.episode_inputs import RunInputs
from kdrun.measure.convergence import verdict
from kdrun.measure.cost import ratios
from kdrun.measure.metrics import aggregate_reports, mean_ci
from kdrun.runtime.slurm import slurm_job
from kdrun.stages.student import budget_key

log = logging.getLogger("kdrun.pipeline")


def run_metrics(
    cfg: DictConfig,
    records: list[dict],
    teacher_source: str,
    pool: int,
    timing: dict[str, float],
    shared: RunInputs,
    costs: dict[str, dict],
) -> dict:
    """Means and 95% CIs over episodes, each model's convergence verdict (logged when it
    failed) and cost (params, MACs, size, latency, throughput; the baseline shares the
    student's architecture), the setting, timing, cache, device and Slurm job; metrics.json
    without checksums."""
    gain = mean_ci([r["kd_gain"] for r in records])
    convergence = {
        stage: verdict([r["curves"][stage] for r in records], budget_key(cfg.student))
        for stage in ("student", "baseline")
    }
    for stage, v in convergence.items():
        if v["converged"] is False:
            log.warning("%s %s", stage, v["note"])
    metrics = {
        "teacher": {
            **aggregate_reports([r["teacher"] for r in records]),
            "source": teacher_source,
            "arch": cfg.teacher.arch,
            "epochs": None if teacher_source == "checkpoint" else cfg.teacher.epochs,
            "cost": costs["teacher"],
        },
        "student": {
            **aggregate_reports([r["student"] for r in records]),
            "arch": cfg.student.arch,
            "loss": cfg.loss.name,
            "convergence": convergence["student"],
            "cost": costs["student"],
            "vs_teacher": vs_teacher(records, costs),
            "init": records[0].get("student_init"),  # per episode: episodes[*].student_init
            "export": records[0].get("export"),  # export=onnx: episode 0's verified file
        },
        "baseline": {
            **aggregate_reports([r["baseline"] for r in records]),
            "arch": cfg.student.arch,
            "loss": "ce",
            "source": _source([r.get("baseline_source", "trained") for r in records]),
            "convergence": convergence["baseline"],
            "cost": costs["student"],
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
            "transfer": transfer_name(cfg),
            **({"val_per_class": cfg.data.val_per_class} if cfg.data.val_per_class else {}),
        },
        "episodes": records,
        "timing": {k: round(v, 3) for k, v in timing.items()},
        "cache": shared.cache.summary(),
        "device": shared.runtime.describe(),
        "slurm": slurm_job(),  # which Slurm job and array task ran it; None outside Slurm
        "config_digest": config_digest(cfg),
    }
    return metrics


def vs_teacher(records: list[dict], costs: dict[str, dict]) -> dict:
    """The student against its teacher: times fewer parameters and MACs, times faster (batch-1
    latency), and the accuracy difference in points (student minus teacher, mean over episodes)."""
    points = [100 * (r["student"]["test_acc"] - r["teacher"]["test_acc"]) for r in records]
    return {
        **{f"{k}_ratio": v for k, v in ratios(costs["teacher"], costs["student"]).items()},
        "acc_points": sum(points) / len(points),
    }


def _source(per_episode: list[str]) -> str:
    """'cache' or 'trained' for the run, or how many episodes reused a cached model."""
    cached = per_episode.count("cache")
    if cached in (0, len(per_episode)):
        return per_episode[0]
    return f"cache ({cached} of {len(per_episode)} episodes)"


def history_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    fields = ["episode", "stage", "epoch", "step", "loss", "train_acc", "lr", "seconds", "test_acc"]
    if any("val_acc" in row for row in rows):  # data.val_per_class > 0: the curve's val points
        fields.append("val_acc")
    writer = csv.DictWriter(buf, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
