"""logger=mlflow: one MLflow run per kdrun run, in one experiment per sweep. Params are the
resolved config, metrics the same series as TensorBoard's, artifacts metrics.json, history.csv,
the run's table and its learning-curve plot. The default store is a local SQLite file."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from kdrun.loggers.base import Param, RunLogger
from kdrun.loggers.registry import register_logger

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

PROBE_TIMEOUT_S = 5.0  # MLflow's own client retries a dead server for minutes before failing
PARAMS_PER_CALL = 100  # MLflow's limit per log_batch request
VALUE_CHARS = 6000  # MLflow's limit on a param value


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI (relative to the working dir), else None."""
    prefix = "sqlite:///"
    return Path(to_absolute_path(uri[len(prefix) :])) if uri.startswith(prefix) else None


def probe(uri: str) -> None:
    """Fail in seconds when an http(s) tracking server does not answer at all."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered (auth, a proxy's page): MLflow's own calls say what is wrong
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"tracking server {uri} does not answer ({exc})") from None


def experiment_name(cfg: DictConfig, sweep_dir: Path | None) -> str:
    """logger.experiment_name, else one experiment per sweep (named by its dir), else kdrun."""
    if cfg.experiment_name:
        return cfg.experiment_name
    return f"kdrun sweep {sweep_dir}" if sweep_dir is not None else "kdrun"


def tracking_uri(cfg: DictConfig) -> str:
    db = sqlite_path(cfg.tracking_uri)
    return f"sqlite:///{db}" if db else cfg.tracking_uri


def open_experiment(cfg: DictConfig, name: str) -> tuple[MlflowClient, str]:
    """A client and the id of experiment `name`, created by whichever job comes first. A local
    store keeps artifacts next to its database, and parallel jobs take turns creating its
    tables (MLflow's migrations are not safe to run twice at once)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg)
    probe(uri)
    db = sqlite_path(cfg.tracking_uri)
    if db is None:
        client = MlflowClient(uri)
        return client, _experiment_id(client, name, None)
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        client = MlflowClient(uri)
        return client, _experiment_id(client, name, (db.parent / "mlflow-artifacts").as_uri())


def _experiment_id(client: MlflowClient, name: str, location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # a parallel job on a server created it first
        return client.get_experiment_by_name(name).experiment_id


@register_logger(
    "mlflow", package="mlflow", modules=("mlflow", "sqlalchemy", "alembic"), extra="mlflow"
)
class MLflowLogger(RunLogger):
    attaches_files = True
    client = None
    run_id: str | None = None

    @property
    def where(self) -> str:
        name = experiment_name(self.cfg, self.place.sweep_dir)
        return f"experiment {name!r}, run {self.run_id} in {tracking_uri(self.cfg)}"

    @classmethod
    def sweep_summary(cls, cfg: DictConfig, sweep_dir: Path, files: list[Path]) -> None:
        """summary.csv/md/png as the artifacts of a run named `sweep summary` in the sweep's
        experiment (tagged kdrun.kind=sweep-summary, so a search can leave it out)."""
        client, experiment_id = open_experiment(cfg, experiment_name(cfg, sweep_dir))
        tags = {"kdrun.kind": "sweep-summary", "kdrun.sweep_dir": str(sweep_dir)}
        run_id = client.create_run(experiment_id, run_name="sweep summary", tags=tags).info.run_id
        for path in files:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, "FINISHED")

    def start(self, params: dict[str, Param]) -> None:
        from mlflow.entities import Param as MLParam

        name = experiment_name(self.cfg, self.place.sweep_dir)
        self.client, experiment_id = open_experiment(self.cfg, name)
        tags = {"kdrun.kind": "run", "kdrun.run_dir": str(self.place.out_dir)}
        if self.place.job is not None:
            tags |= {"kdrun.sweep_dir": str(self.place.sweep_dir), "kdrun.job": str(self.place.job)}
        self._close_dangling(experiment_id)
        run = self.client.create_run(experiment_id, run_name=self.place.name, tags=tags)
        self.run_id = run.info.run_id
        items = [MLParam(k, str(v)[:VALUE_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=items[i : i + PARAMS_PER_CALL])

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        at = _now_ms()
        metrics = [Metric(k, float(v), at, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, params: dict[str, Param], final: dict[str, float], files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, killed: bool = False) -> None:
        """FAILED, or KILLED when a signal (Ctrl-C, SIGTERM, SIGHUP) stopped the run."""
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, "KILLED" if killed else "FAILED")

    def _close_dangling(self, experiment_id: str) -> None:
        """A run of this run directory still RUNNING was left by a killed kdrun (SIGKILL, a
        lost node): mark it KILLED before this one starts, so the tracker shows no ghost."""
        out_dir = str(self.place.out_dir)
        if "'" in out_dir:
            return  # not expressible in MLflow's filter syntax; leave it
        found = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`kdrun.run_dir` = '{out_dir}' and attributes.status = 'RUNNING'",
        )
        for run in found:
            self.client.set_terminated(run.info.run_id, "KILLED")


def _now_ms() -> int:
    return int(time.time() * 1000)
