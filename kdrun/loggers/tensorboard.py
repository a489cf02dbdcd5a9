"""logger=tensorboard: event files through torch's SummaryWriter. Scalars per step, and the
run's hyperparameters with its final metrics in the HParams plugin, so the jobs of a sweep
(one log directory, a subdirectory each) compare in TensorBoard's HParams tab."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from kdrun.loggers.base import Param, RunLogger, flat_params
from kdrun.loggers.registry import register_logger
from kdrun.loggers.tracker import final_metrics


def sweep_log_dir(cfg: DictConfig, sweep_dir: Path) -> Path:
    """A sweep's one log directory: <sweep dir>/tensorboard, or <logger.log_dir>/<sweep name>."""
    if cfg.log_dir:
        return Path(to_absolute_path(cfg.log_dir)) / sweep_dir.name
    return sweep_dir / "tensorboard"


# With the keys that differ between jobs, the columns of a sweep's HParams table: the few that
# say what a run was. Every key stays in each run's own hparams (and in metrics.json).
CORE = ("shots", "ways", "loss.name", "student.arch", "teacher.arch", "data.source", "episodes")


def finished_records(sweep_dir: Path) -> list[dict]:
    """The verified records of the sweep's finished jobs."""
    from kdrun.store.record import verify_record

    checks = [verify_record(p.parent) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    return [c.record for c in checks if c.state == "ok" and c.record.get("status") == "ok"]


def experiment_summary(records: list[dict]) -> object:
    """An HParams experiment over the jobs' resolved configs and final metrics: the keys that
    differ between jobs and CORE as columns (TensorBoard sorts those that differ first)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    params = [flat_params(r["config"]) for r in records]
    keys = sorted({k for p in params for k in p})
    differs = {k: len({repr(p.get(k)) for p in params}) > 1 for k in keys}
    types = {bool: api_pb2.DATA_TYPE_BOOL, str: api_pb2.DATA_TYPE_STRING}
    infos = [
        api_pb2.HParamInfo(
            name=k,
            differs=differs[k],
            type=types.get(type(params[0].get(k)), api_pb2.DATA_TYPE_FLOAT64),
        )
        for k in keys
        if differs[k] or k in CORE
    ]
    metrics = [
        api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in final_metrics(records[0])
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    data = metadata.create_summary_metadata(
        plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=data)])


@register_logger(
    "tensorboard", package="tensorboard", modules=("torch.utils.tensorboard",), extra="tensorboard"
)
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
        """The sweep's HParams experiment: the hparams that differ between its jobs first and
        the final metrics as its columns (without it TensorBoard lists every scalar tag);
        and summary.md as a Markdown table in the Text tab. Both in the run `summary`."""
        from torch.utils.tensorboard import SummaryWriter

        records = finished_records(sweep_dir)
        table = next((p for p in files if p.suffix == ".md"), None)
        with SummaryWriter(str(sweep_log_dir(cfg, sweep_dir) / "summary")) as writer:
            if records:
                writer.file_writer.add_summary(experiment_summary(records))
            if table is not None:
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
        """HParams: this run's session start (params) and end (status) summaries, next to the
        `final/*` scalars. No experiment summary: TensorBoard then builds one from all the
        sessions under --logdir, with the hparams that differ between runs first."""
        from torch.utils.tensorboard.summary import hparams

        _, start, end = hparams(params, {tag: float(v) for tag, v in final.items()})
        for summary in (start, end):
            self.writer.file_writer.add_summary(summary)
        self.writer.close()

    def fail(self, killed: bool = False) -> None:
        if self.writer is not None:
            self.writer.close()
