"""What a kdrun run sends to its experiment tracker, and the guard that keeps a failing tracker
from costing the run: the first error is one WARNING, then the tracker is dropped. metrics.json,
history.csv and the summaries never depend on it."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrun.loggers.base import RunLogger, RunPlace, flat_params
from kdrun.loggers.registry import LOGGERS

log = logging.getLogger("kdrun")

MODELS = ("teacher", "baseline", "student")
STAGES = ("student", "baseline")  # the models with a learning curve
SERIES = ("loss", "train_acc", "lr", "test_acc")  # history.csv's per-step columns


def final_metrics(record: dict) -> dict[str, float]:
    """The run's headline numbers under the tags the trackers share, most read first (the
    order of TensorBoard's HParams columns)."""
    out = {f"final/{m}_test_acc": record[m]["test_acc"] for m in ("student", "baseline")}
    out |= {
        "final/kd_gain": record["kd_gain"],
        "final/teacher_test_acc": record["teacher"]["test_acc"],
    }
    out |= {f"final/{m}_test_acc_ci95": record[m]["test_acc_ci95"] for m in MODELS}
    out["final/kd_gain_ci95"] = record["kd_gain_ci95"]
    out |= {f"final/{m}_macro_f1": record[m]["macro_f1"] for m in MODELS}
    out["final/seconds"] = record["timing"]["total"]
    return out


def history_scalars(e: int, rows: list[dict]) -> dict[int, dict[str, float]]:
    """history.csv's rows of episode `e` by step: episode_<e>/<stage>/<column>."""
    by_step: dict[int, dict[str, float]] = {}
    for row in rows:
        values = by_step.setdefault(int(row["step"]), {})
        for key in SERIES:
            if row.get(key) is not None:
                values[f"episode_{e}/{row['stage']}/{key}"] = float(row[key])
    return by_step


def episode_scalars(record: dict) -> dict[str, float]:
    """One episode's scores, drawn against the episode number."""
    out = {f"episodes/{m}_test_acc": record[m]["test_acc"] for m in MODELS}
    return out | {"episodes/kd_gain": record["kd_gain"]}


def curve_scalars(record: dict) -> dict[int, dict[str, float]]:
    """The mean learning curve over episodes (metrics.json's <model>.convergence.curve)."""
    by_step: dict[int, dict[str, float]] = {}
    for stage in STAGES:
        for point in record[stage]["convergence"]["curve"]:
            by_step.setdefault(point["step"], {})[f"curve/{stage}_test_acc"] = point["test_acc"]
    return by_step


class Tracker:
    """Sends a run's figures to one RunLogger; after its first error it warns once and stops."""

    def __init__(self, name: str, backend: RunLogger | None, cfg: DictConfig) -> None:
        self.name, self.backend = name, backend
        # logger=none (the default) sends nothing: no flattening of the config for it
        self.params = flat_params(OmegaConf.to_container(cfg, resolve=True)) if backend else {}

    def _call(self, send: Callable[[RunLogger], object]) -> None:
        if self.backend is None:
            return
        try:
            send(self.backend)
        except Exception as exc:  # a tracker's failure is never the run's
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            log.warning(
                "logger=%s failed (%s: %s); the run goes on without it, and metrics.json, "
                "history.csv and the summaries are written as usual.",
                self.name,
                type(exc).__name__,
                reason,
            )
            self.backend = None

    def start(self) -> None:
        self._call(lambda b: b.start(self.params))
        if self.backend is not None:
            log.info("logger=%s: %s", self.name, self.backend.where)

    def episode(self, e: int, record: dict, rows: list[dict]) -> None:
        """An episode's training history, learning curves and scores, as soon as it ends."""
        if self.backend is None:
            return
        for step, values in sorted(history_scalars(e, rows).items()):
            self._call(lambda b, v=values, s=step: b.scalars(v, s))
        self._call(lambda b: b.scalars(episode_scalars(record), e))

    def finish(self, record: dict, out_dir: Path) -> None:
        """The mean curve, the final metrics and the run's files (record, history, table, plot)."""
        if self.backend is None:  # logger=none, or it failed: no plot to draw
            return
        attaches = self.backend.attaches_files  # read now: a failure below drops the backend
        for step, values in sorted(curve_scalars(record).items()):
            self._call(lambda b, v=values, s=step: b.scalars(v, s))
        final = final_metrics(record)
        self._call(lambda b: b.scalars(final, 0))
        if not attaches:
            self._call(lambda b: b.finish(self.params, final, []))
            return
        files = [out_dir / n for n in ("metrics.json", "history.csv") if (out_dir / n).is_file()]
        with tempfile.TemporaryDirectory(prefix="kdrun-logger-") as tmp:
            self._call(lambda b: b.finish(self.params, final, files + _run_summary(record, tmp)))

    def fail(self, killed: bool = False) -> None:
        self._call(lambda b: b.fail(killed))


def _run_summary(record: dict, tmp: str) -> list[Path]:
    """The run's table (as printed at its end) and its learning-curve plot, for the tracker."""
    from kdrun.loggers.artifacts import curve_plot, run_table_text

    table = Path(tmp) / "summary.txt"
    table.write_text(run_table_text(record))
    plot = Path(tmp) / "learning_curve.png"
    curve_plot(record, plot)
    return [table, plot]


def run_place(out_dir: Path) -> RunPlace:
    """This Hydra job's place: a multirun job knows its sweep dir and number."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from kdrun.store.record import job_overrides

    name = " ".join(job_overrides()) or out_dir.name
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return RunPlace(out_dir, name)
    hc = HydraConfig.get()
    return RunPlace(out_dir, name, Path(hc.sweep.dir), int(hc.job.num))


@contextmanager
def tracking(cfg: DictConfig, out_dir: Path) -> Iterator[Tracker]:
    """A started tracker for `cfg.logger` (a no-op for logger=none); a run that raises closes
    its tracked run as failed, one stopped by a signal as killed."""
    name = cfg.logger.name
    backend = None if name == "none" else LOGGERS[name].cls(cfg.logger, run_place(out_dir))
    tracker = Tracker(name, backend, cfg)
    tracker.start()
    try:
        yield tracker
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP, SIGQUIT (kdrun.runtime.interrupt)
        tracker.fail(killed=True)
        raise
    except BaseException:
        tracker.fail()
        raise


def log_sweep_summary(cfg: DictConfig, sweep_dir: Path, files: list[Path]) -> None:
    """The multirun's summary files to its tracker's group for the sweep; a failure warns."""
    name = cfg.logger.name
    if name == "none" or name not in LOGGERS:
        return
    try:
        LOGGERS[name].cls.sweep_summary(cfg.logger, sweep_dir, files)
    except Exception as exc:
        log.warning(
            "logger=%s could not take the sweep summary (%s: %s)", name, type(exc).__name__, exc
        )
