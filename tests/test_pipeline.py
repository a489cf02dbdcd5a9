"""The whole pipeline in-process on tiny synthetic data: outputs, cache reuse, determinism."""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest
import torch

from kdrun import pipeline
from kdrun.measure.cost import without_clocks
from kdrun.pipeline import run
from kdrun.stages import soft_labels, student, teacher
from tests.conftest import SMOKE_FAST


def test_run_writes_metrics_history_and_weights(compose_cfg, tmp_path):
    out = tmp_path / "run"
    metrics = run(compose_cfg(*SMOKE_FAST), out)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    for model in ("teacher", "student", "baseline"):
        assert 0.0 <= on_disk[model]["test_acc"] <= 1.0
        assert len(on_disk[model]["per_class_recall"]) == 10
    assert on_disk["kd_gain"] == on_disk["student"]["test_acc"] - on_disk["baseline"]["test_acc"]
    assert {"data", "teacher", "soft_labels", "student", "baseline", "total"} <= set(
        on_disk["timing"]
    )
    assert on_disk["cache"]["teacher"] == {"hit": 0, "miss": 1}
    assert on_disk["cache"]["soft_labels"] == {"hit": 0, "miss": 1}
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert {r["stage"] for r in rows} == {"teacher", "student", "baseline"}
    state = torch.load(out / "student.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [*out.iterdir(), *(tmp_path / "cache").rglob("*.pt*")]:  # readable by others
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path


def test_second_run_trains_no_teacher_and_computes_no_soft_labels(
    compose_cfg, tmp_path, monkeypatch
):
    cfg = compose_cfg(*SMOKE_FAST)
    first = run(cfg, tmp_path / "a")
    calls = {"fit": 0, "predict": 0}
    real_fit, real_predict = teacher.fit, soft_labels.predict

    def counting(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(teacher, "fit", counting("fit", real_fit))
    monkeypatch.setattr(soft_labels, "predict", counting("predict", real_predict))
    second = run(cfg, tmp_path / "b")
    assert calls == {"fit": 0, "predict": 0}
    assert second["teacher"]["source"] == "cache"
    assert (first["baseline"]["source"], second["baseline"]["source"]) == ("trained", "cache")
    for kind in ("teacher", "teacher_eval", "soft_labels"):
        assert second["cache"][kind] == {"hit": 1, "miss": 0}, kind
    assert second["teacher"]["test_acc"] == first["teacher"]["test_acc"]
    assert second["student"]["test_acc"] == first["student"]["test_acc"]


@pytest.mark.slow
def test_temperature_sweeps_reuse_the_soft_labels(compose_cfg, tmp_path):
    first = run(compose_cfg(*SMOKE_FAST, "loss.temperature=2"), tmp_path / "a")
    again = run(compose_cfg(*SMOKE_FAST, "loss.temperature=8", "loss.alpha=0.5"), tmp_path / "b")
    assert again["cache"]["soft_labels"] == {"hit": 1, "miss": 0}
    # The CE baseline ignores the loss settings: one baseline serves the whole sweep.
    assert again["cache"]["baseline"] == {"hit": 1, "miss": 0}
    assert again["baseline"] == {**first["baseline"], "source": "cache"}
    assert again["student"] != first["student"]


@pytest.mark.slow
def test_new_shots_reuse_the_teacher_but_not_the_soft_labels(compose_cfg, tmp_path):
    run(compose_cfg(*SMOKE_FAST), tmp_path / "a")
    other = run(compose_cfg(*SMOKE_FAST, "shots=2", "seed=5"), tmp_path / "b")
    assert other["cache"]["teacher"] == {"hit": 1, "miss": 0}
    assert other["cache"]["soft_labels"] == {"hit": 0, "miss": 1}


def test_the_student_stage_never_runs_the_teacher(compose_cfg, tmp_path, monkeypatch):
    forwards = []
    real_train_student = student.train_student

    def spy(*args, **kwargs):
        handle = teacher_model.register_forward_hook(lambda *a: forwards.append(1))
        try:
            return real_train_student(*args, **kwargs)
        finally:
            handle.remove()

    real_prepare = pipeline.prepare_teacher

    def keep_teacher(*args, **kwargs):
        nonlocal teacher_model
        result = real_prepare(*args, **kwargs)
        teacher_model = result.model
        return result

    teacher_model = None
    monkeypatch.setattr(pipeline, "prepare_teacher", keep_teacher)
    monkeypatch.setattr(pipeline, "train_student", spy)
    run(compose_cfg(*SMOKE_FAST), tmp_path / "run")
    assert teacher_model is not None and forwards == []


@pytest.mark.slow
def test_same_seed_gives_identical_metrics(compose_cfg, tmp_path):
    a = run(compose_cfg(*SMOKE_FAST, cache=tmp_path / "c1"), tmp_path / "a")
    b = run(compose_cfg(*SMOKE_FAST, cache=tmp_path / "c2"), tmp_path / "b")
    a, b = without_clocks(a), without_clocks(b)  # clocks, not results
    for model in ("teacher", "student", "baseline"):
        assert a[model] == b[model]
    assert a["student"]["cost"]["macs"] > 0  # the counted parts are compared above
    assert a["episodes"] == b["episodes"]


@pytest.mark.slow
def test_a_saved_teacher_checkpoint_can_be_loaded(compose_cfg, tmp_path):
    first = run(compose_cfg(*SMOKE_FAST), tmp_path / "a")
    ckpt = next((tmp_path / "cache" / "teacher").glob("*.pt"))
    again = run(
        compose_cfg(*SMOKE_FAST, f"teacher.checkpoint={ckpt}", cache=tmp_path / "c2"),
        tmp_path / "b",
    )
    assert again["teacher"]["source"] == "checkpoint"
    assert again["teacher"]["test_acc"] == first["teacher"]["test_acc"]
