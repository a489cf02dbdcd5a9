"""Experiment trackers (logger=tensorboard|mlflow), read back through each library's own reader
and compared with the run's metrics.json and history.csv; a missing library and a failing
tracker."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kdrun.errors import ConfigError
from kdrun.loggers.base import RunLogger, RunPlace
from kdrun.loggers.tracker import Tracker
from kdrun.pipeline import run
from kdrun.store.record import verify_record
from tests.conftest import SMOKE_FAST, compose_config

SMOKE = [*SMOKE_FAST, "episodes=2"]  # two episodes: per-episode series and the mean curve


def smoke_run(tmp: Path, *overrides: str) -> tuple[Path, dict, list[dict]]:
    """A tracked smoke run: its dir, metrics.json and history.csv rows."""
    cfg = compose_config([*SMOKE, f"cache_dir={tmp / 'cache'}", *overrides])
    out = tmp / "run"
    run(cfg, out)
    record = json.loads((out / "metrics.json").read_text())
    rows = list(csv.DictReader((out / "history.csv").open()))
    return out, record, rows


def history(rows: list[dict], episode: int, stage: str, column: str) -> list[tuple[int, float]]:
    """history.csv's (step, value) points of one episode, stage and column."""
    return [
        (int(r["step"]), float(r[column]))
        for r in rows
        if r["episode"] == str(episode) and r["stage"] == stage and r[column] != ""
    ]


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# --- TensorBoard -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory):
    pytest.importorskip("tensorboard", reason="needs pip install 'kdrun[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, record, rows = smoke_run(tmp_path_factory.mktemp("tb"), "logger=tensorboard")
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return events, record, rows, out


def scalars(events, tag: str) -> list[tuple[int, float]]:
    return [(s.step, s.value) for s in events.Scalars(tag)]


@pytest.mark.slow
def test_tensorboard_scalars_are_the_runs_numbers(tensorboard_run):
    events, record, rows, _ = tensorboard_run
    for model in ("teacher", "baseline", "student"):
        [(_, acc)] = scalars(events, f"final/{model}_test_acc")
        assert acc == pytest.approx(record[model]["test_acc"], rel=1e-6)
        per_episode = [e[model]["test_acc"] for e in record["episodes"]]
        got = scalars(events, f"episodes/{model}_test_acc")
        assert got == [(e, pytest.approx(a, rel=1e-6)) for e, a in enumerate(per_episode)]
    [(_, gain)] = scalars(events, "final/kd_gain")
    assert gain == pytest.approx(record["kd_gain"], rel=1e-5, abs=1e-7)
    for stage in ("student", "baseline"):
        curve = record[stage]["convergence"]["curve"]
        expected = [(p["step"], pytest.approx(p["test_acc"], rel=1e-6)) for p in curve]
        assert scalars(events, f"curve/{stage}_test_acc") == expected
        for e in (0, 1):
            for column in ("loss", "train_acc"):
                points = history(rows, e, stage, column)
                assert points, (e, stage, column)
                expected = [(s, pytest.approx(v, rel=1e-6)) for s, v in points]
                assert scalars(events, f"episode_{e}/{stage}/{column}") == expected


def test_tensorboard_hparams_hold_the_config_and_final_metrics(tensorboard_run):
    from tensorboard.plugins.hparams import api_pb2, metadata

    events, record, _, _ = tensorboard_run
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    config = flatten(record["config"])
    assert hparams["shots"] == config["shots"] == 5
    assert hparams["episodes"] == 2
    assert hparams["loss.name"] == "kd"
    assert hparams["student.lr"] == pytest.approx(config["student.lr"])
    assert set(hparams) == set(config)
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    assert "final/student_test_acc" in events.Tags()["scalars"]  # the session's metric


def test_a_tensorboard_sweep_summary_names_the_hparams_columns(tensorboard_run, tmp_path):
    """The sweep's experiment: columns are the keys that differ plus CORE, then final/*."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    from kdrun.loggers.tensorboard import CORE, TensorBoardLogger

    _, record, _, out = tensorboard_run  # a one-job "sweep": out's parent holds out/metrics.json
    cfg = compose_config(["logger=tensorboard", f"logger.log_dir={tmp_path}"]).logger
    table = tmp_path / "summary.md"
    table.write_text("| overrides |\n|---|\n| shots=5 |\n")
    TensorBoardLogger.sweep_summary(cfg, out.parent, [table])
    events = EventAccumulator(str(tmp_path / out.parent.name / "summary"))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.EXPERIMENT_TAG]
    experiment = metadata.parse_experiment_plugin_data(content)
    assert {h.name for h in experiment.hparam_infos} == set(CORE)  # nothing differs in one job
    tags = [m.name.tag for m in experiment.metric_infos]
    assert tags[:3] == ["final/student_test_acc", "final/baseline_test_acc", "final/kd_gain"]
    assert set(tags) <= set(tensorboard_run[0].Tags()["scalars"])


# --- MLflow ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory):
    pytest.importorskip("mlflow", reason="needs pip install 'kdrun[mlflow]'")
    pytest.importorskip("sqlalchemy", reason="needs pip install 'kdrun[mlflow]'")
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out, record, rows = smoke_run(tmp, "logger=mlflow", f"logger.tracking_uri={uri}")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kdrun")
    [found] = client.search_runs([experiment.experiment_id])
    return client, found, out, record, rows, tmp


@pytest.mark.slow
def test_mlflow_run_has_the_config_as_params_and_the_runs_metrics(mlflow_run):
    client, found, _, record, rows, _ = mlflow_run
    assert found.info.status == "FINISHED"
    assert found.data.params == {k: str(v) for k, v in flatten(record["config"]).items()}
    metrics = found.data.metrics
    for model in ("teacher", "baseline", "student"):
        assert metrics[f"final/{model}_test_acc"] == record[model]["test_acc"]
        assert metrics[f"final/{model}_macro_f1"] == record[model]["macro_f1"]
    assert metrics["final/kd_gain"] == record["kd_gain"]

    def series(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, key))

    for stage in ("student", "baseline"):
        curve = record[stage]["convergence"]["curve"]
        assert series(f"curve/{stage}_test_acc") == [(p["step"], p["test_acc"]) for p in curve]
        for e in (0, 1):
            assert series(f"episode_{e}/{stage}/loss") == history(rows, e, stage, "loss")
    per_episode = [(e, r["student"]["test_acc"]) for e, r in enumerate(record["episodes"])]
    assert series("episodes/student_test_acc") == per_episode


def test_mlflow_artifacts_are_the_runs_files(mlflow_run):
    client, found, out, _, _, tmp = mlflow_run
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert names == {"metrics.json", "history.csv", "summary.txt", "learning_curve.png"}
    local = Path(client.download_artifacts(found.info.run_id, "metrics.json", str(tmp)))
    assert local.read_bytes() == (out / "metrics.json").read_bytes()
    table = Path(client.download_artifacts(found.info.run_id, "summary.txt", str(tmp)))
    assert "student" in table.read_text() and "kd gain" in table.read_text()
    assert (tmp / "mlflow-artifacts").is_dir()  # a local store keeps artifacts beside its db


# --- one group per sweep -----------------------------------------------------------------------


def test_a_sweep_job_logs_into_the_sweeps_group(tmp_path):
    from kdrun.loggers.mlflow import experiment_name
    from kdrun.loggers.tensorboard import TensorBoardLogger

    sweep = tmp_path / "multirun" / "12-00-00"
    job = RunPlace(sweep / "3", "shots=2", sweep, 3)
    tb = compose_config(["logger=tensorboard"]).logger
    assert TensorBoardLogger(tb, job).log_dir == sweep / "tensorboard" / "3"
    assert TensorBoardLogger(tb, RunPlace(tmp_path / "r", "")).log_dir == tmp_path / "r/tensorboard"
    ml = compose_config(["logger=mlflow"]).logger
    assert experiment_name(ml, sweep) == f"kdrun sweep {sweep}"
    assert experiment_name(ml, None) == "kdrun"
    assert experiment_name(OmegaConf.merge(ml, {"experiment_name": "x"}), sweep) == "x"


# --- a missing library, a failing tracker ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "module"),
    [("mlflow", "mlflow"), ("mlflow", "sqlalchemy"), ("tensorboard", "torch.utils.tensorboard")],
)
def test_a_missing_library_is_refused_in_one_line_naming_the_extra(
    option, module, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, module, None)  # `import` now raises ImportError
    cfg = compose_config([*SMOKE, f"cache_dir={tmp_path / 'cache'}", f"logger={option}"])
    with pytest.raises(ConfigError) as exc:
        run(cfg, tmp_path / "run")
    assert str(exc.value) == (
        f"logger={option} needs the {option} package, which is not installed: "
        f"pip install 'kdrun[{option}]'"
    )
    assert not (tmp_path / "cache").exists()  # refused before any data was decoded


def warnings_of(caplog, option: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith(f"logger={option} failed")
    ]


@pytest.mark.slow
def test_an_unreachable_tracking_server_warns_once_and_the_run_completes(tmp_path, caplog):
    pytest.importorskip("mlflow", reason="needs pip install 'kdrun[mlflow]'")
    out, record, _ = smoke_run(
        tmp_path, "logger=mlflow", "logger.tracking_uri=http://127.0.0.1:9", "episodes=1"
    )
    [warning] = warnings_of(caplog, "mlflow")
    assert "127.0.0.1:9" in warning
    assert verify_record(out).state == "ok"
    assert record["status"] == "ok"


@pytest.mark.slow
def test_an_unwritable_log_dir_warns_once_and_the_run_completes(tmp_path, caplog):
    pytest.importorskip("tensorboard", reason="needs pip install 'kdrun[tensorboard]'")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory would go")
    out, _, _ = smoke_run(tmp_path, "logger=tensorboard", f"logger.log_dir={blocker}", "episodes=1")
    assert len(warnings_of(caplog, "tensorboard")) == 1
    assert verify_record(out).state == "ok"


class Breaks(RunLogger):
    """A tracker whose connection drops after the run started: every scalar call raises."""

    calls: list[str]

    def start(self, params):
        self.calls = ["start"]

    def scalars(self, values, step):
        self.calls.append("scalars")
        raise ConnectionResetError("connection reset by peer")

    def finish(self, params, final, files):
        self.calls.append("finish")

    def fail(self):
        self.calls.append("fail")

    @classmethod
    def sweep_summary(cls, cfg, sweep_dir, files):
        raise AssertionError("not called for a single run")

    @property
    def where(self) -> str:
        return "nowhere"


def test_a_tracker_failing_mid_run_warns_once_and_is_never_called_again(tmp_path, caplog):
    cfg = compose_config(["logger=tensorboard"])
    backend = Breaks(cfg.logger, RunPlace(tmp_path, "run"))
    tracker = Tracker("tensorboard", backend, cfg)
    tracker.start()
    record = {m: {"test_acc": 0.5} for m in ("teacher", "baseline", "student")}
    rows = [{"stage": "student", "step": s, "loss": 1.0} for s in (1, 2, 3)]
    for e in range(3):
        tracker.episode(e, {**record, "kd_gain": 0.0}, rows)
    tracker.finish({**record, "kd_gain": 0.0}, tmp_path)
    assert backend.calls == ["start", "scalars"]
    [warning] = warnings_of(caplog, "tensorboard")
    assert "ConnectionResetError: connection reset by peer" in warning


# --- a real multirun through the console script ------------------------------------------------

SWEEP = ["-m", *SMOKE_FAST, "shots=1,2", "device.threads=1"]


def job_records(sweep: Path) -> dict[int, dict]:
    records = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    return {r["multirun"]["job"]: r for r in records}


@pytest.mark.slow  # two sweeps through the console script: a minute on a loaded machine
def test_a_tensorboard_sweep_is_one_log_dir_with_an_hparams_session_per_job(tmp_path):
    pytest.importorskip("tensorboard", reason="needs pip install 'kdrun[tensorboard]'")
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    from tests.test_cli import kdrun

    proc = kdrun(*SWEEP, "logger=tensorboard", "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "sweep" / "tensorboard"))
    logs.Reload()
    assert set(logs.Runs()) == {"0", "1", "summary"}
    assert "sweep/summary/text_summary" in logs.Runs()["summary"]["tensors"]  # its table
    summary = logs.PluginRunToTagToContent(metadata.PLUGIN_NAME)["summary"]
    experiment = metadata.parse_experiment_plugin_data(summary[metadata.EXPERIMENT_TAG])
    assert [h.name for h in experiment.hparam_infos if h.differs] == ["shots"]
    for job, record in job_records(tmp_path / "sweep").items():
        content = logs.PluginRunToTagToContent(metadata.PLUGIN_NAME)[str(job)]
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        assert start.hparams["shots"].number_value == record["config"]["shots"]
        [final] = logs.Tensors(str(job), "final/student_test_acc")
        value = tensor_util.make_ndarray(final.tensor_proto).item()
        assert value == pytest.approx(record["student"]["test_acc"], rel=1e-6)


@pytest.mark.slow
def test_a_parallel_mlflow_sweep_is_one_experiment_with_a_run_per_job(tmp_path):
    pytest.importorskip("mlflow", reason="needs pip install 'kdrun[mlflow]'")
    from mlflow.tracking import MlflowClient

    from tests.test_cli import kdrun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = kdrun(
        *SWEEP,
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",  # both jobs open the new store at once
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logger=mlflow failed" not in proc.stdout + proc.stderr
    client = MlflowClient(uri)
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    assert experiment.name == "kdrun sweep sweep"
    runs = client.search_runs([experiment.experiment_id])
    jobs = {int(r.data.tags["kdrun.job"]): r for r in runs if r.data.tags["kdrun.kind"] == "run"}
    for job, record in job_records(tmp_path / "sweep").items():
        assert jobs[job].info.status == "FINISHED"
        assert jobs[job].data.params["shots"] == str(record["config"]["shots"])
        assert jobs[job].data.metrics["final/student_test_acc"] == record["student"]["test_acc"]
    assert len(jobs) == 2
    [summary] = [r for r in runs if r.data.tags["kdrun.kind"] == "sweep-summary"]
    names = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert names == {"summary.csv", "summary.md", "summary.png"}


def test_mlflow_marks_a_signalled_run_killed_and_closes_a_dangling_one(tmp_path):
    """issue 22, class 9: no RUNNING ghost after Ctrl-C/SIGTERM, nor after a SIGKILL."""
    pytest.importorskip("mlflow", reason="needs pip install 'kdrun[mlflow]'")
    pytest.importorskip("sqlalchemy", reason="needs pip install 'kdrun[mlflow]'")
    from mlflow.tracking import MlflowClient

    from kdrun.loggers import tracking
    from kdrun.loggers.mlflow import MLflowLogger

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose_config(["experiment=smoke", "logger=mlflow", f"logger.tracking_uri={uri}"])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), tracking(cfg, out):
        raise KeyboardInterrupt
    from kdrun.loggers.tracker import run_place

    ghost = MLflowLogger(cfg.logger, run_place(out))  # started, then SIGKILLed: never closed
    ghost.start({})
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kdrun").experiment_id

    def statuses() -> list[str]:
        runs = client.search_runs([experiment], order_by=["attributes.start_time ASC"])
        return [r.info.status for r in runs]

    assert statuses() == ["KILLED", "RUNNING"]
    with pytest.raises(RuntimeError), tracking(cfg, out):  # the next run in that directory
        raise RuntimeError("boom")
    assert statuses() == ["KILLED", "KILLED", "FAILED"]
