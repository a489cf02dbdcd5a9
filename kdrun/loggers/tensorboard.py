"""logger=tensorboard: event files through torch's SummaryWriter. Scalars per step, and the
run's hyperparameters with its final metrics in the HParams plugin, so the jobs of a sweep
(one log directory, a subdirectory each) compare in TensorBoard's HParams tab."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from kdrun.loggers.base import Param, RunLogger
from kdrun.loggers.registry import register_logger


def sweep_log_dir(cfg: DictConfig, sweep_dir: Path) -> Path:
    """A sweep's one log directory: <sweep dir>/tensorboard, or <logger.log_dir>/<sweep name>."""
    if cfg.log_dir:
        return Path(to_absolute_path(cfg.log_dir)) / sweep_dir.name
    return sweep_dir / "tensorboard"


@register_logger("tensorboard", module="torch.utils.tensorboard", extra="tensorboard")
class TensorBoardLogger(RunLogger):
    writer = None

    @property
    def log_dir(self) -> Path:
        """<run dir>/tensorboard (or <logger.log_dir>/<run dir name>); a sweep job's is
        <sweep log dir>/<job number>."""
        place = self.place
        if place.sweep_dir is not None:
            return sweep_log_dir(self.cfg, place.sweep_dir) / str(place.job)
        if self.cfg.log_dir:
            return Path(to_absolute_path(self.cfg.log_dir)) / place.out_dir.name
        return place.out_dir / "tensorboard"

    @property
    def where(self) -> str:
        return f"event files in {self.log_dir} (tensorboard --logdir {self.log_dir.parent})"

    @classmethod
    def sweep_summary(cls, cfg: DictConfig, sweep_dir: Path, files: list[Path]) -> None:
        """summary.md as a Markdown table in TensorBoard's Text tab, under the run `summary`."""
        from torch.utils.tensorboard import SummaryWriter

        table = next((p for p in files if p.suffix == ".md"), None)
        if table is not None:
            with SummaryWriter(str(sweep_log_dir(cfg, sweep_dir) / "summary")) as writer:
                writer.add_text("sweep/summary", table.read_text())

    def start(self, params: dict[str, Param]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        for stale in self.log_dir.glob("events.out.tfevents.*"):
            stale.unlink()  # a re-run sweep job's earlier, killed attempt: not this run's
        self.writer = SummaryWriter(str(self.log_dir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def finish(self, params: dict[str, Param], final: dict[str, float], files: list[Path]) -> None:
        """HParams: the experiment, session start (params) and end (status) summaries, in this
        run's own directory, next to the `final/*` scalars they name as metrics."""
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(params, {tag: float(v) for tag, v in final.items()}):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()

    def fail(self) -> None:
        if self.writer is not None:
            self.writer.close()
