"""Teacher checkpoints: an interrupted teacher resumes from its last epoch, bit-identically."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import torch

from kdrun.data import get_source
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import sample_episode
from kdrun.episode_inputs import RunInputs
from kdrun.errors import ConfigError
from kdrun.preflight import check_ranges
from kdrun.runtime.device import resolve_runtime
from kdrun.stages.teacher import prepare_teacher
from kdrun.store import checkpoint as checkpoint_mod
from kdrun.store.cache import ArtifactCache
from kdrun.store.checkpoint import KIND, TrainingCheckpoint
from tests.conftest import SMOKE_FAST

EPOCHS = 4
FAST = [*SMOKE_FAST, "data.train_per_class=40", "pool=0", f"teacher.epochs={EPOCHS}"]


class Interrupted(Exception):
    """Stands in for a kill between epochs."""


def train_teacher(cfg, cache_dir: Path):
    """The teacher stage exactly as the pipeline runs it, with a cache in `cache_dir`."""
    runtime = resolve_runtime(cfg.device)
    cache = ArtifactCache(cache_dir)
    dataset = get_source(cfg.data.source).load(cfg.data, cache)
    classes = len(dataset.classes)
    episode = sample_episode(
        dataset.train.labels, dataset.test.labels, classes, cfg.ways, cfg.shots, cfg.seed
    )
    normalize = Normalize(dataset.train.images, runtime.device)
    shared = RunInputs(dataset, normalize, runtime, cache, cfg.eval_batch_size, cfg.data.augment)
    result = prepare_teacher(cfg.teacher, shared.for_episode(episode))
    return result, cache


def interrupt_after(monkeypatch, stop_epoch: int) -> None:
    """Make the checkpoint raise right after saving `stop_epoch`, as a kill would land there."""
    real = TrainingCheckpoint.after_epoch

    def after_epoch(self, state, epochs):
        real(self, state, epochs)
        if state.epoch == stop_epoch:
            raise Interrupted

    monkeypatch.setattr(checkpoint_mod.TrainingCheckpoint, "after_epoch", after_epoch)


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.slow
def test_an_interrupted_teacher_resumes_and_matches_an_uninterrupted_one_bit_for_bit(
    compose_cfg, tmp_path, monkeypatch, caplog
):
    cfg = compose_cfg(*FAST)
    reference, _ = train_teacher(cfg, tmp_path / "reference")

    with monkeypatch.context() as m:
        interrupt_after(m, 2)
        with pytest.raises(Interrupted):
            train_teacher(cfg, tmp_path / "killed")
    state_files = list((tmp_path / "killed" / KIND).glob("*.pt"))
    assert len(state_files) == 1 and not list((tmp_path / "killed" / "teacher").glob("*.pt"))

    with caplog.at_level(logging.INFO, logger="kdrun"):
        resumed, cache = train_teacher(cfg, tmp_path / "killed")
    assert f"teacher: resuming from epoch 2/{EPOCHS} ({state_files[0]})" in caplog.text
    assert "teacher: training" in caplog.text  # it did train: epochs 3 and 4 only
    assert resumed.source == "trained"
    expected = reference.model.state_dict()
    actual = resumed.model.state_dict()
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert without_seconds(resumed.history) == without_seconds(reference.history)
    assert [row["epoch"] for row in resumed.history] == list(range(1, EPOCHS + 1))
    assert not state_files[0].exists(), "the training state is deleted once the teacher is stored"
    assert resumed.identity == reference.identity


def test_resume_false_starts_over(compose_cfg, tmp_path, monkeypatch, caplog):
    with monkeypatch.context() as m:
        interrupt_after(m, 1)
        with pytest.raises(Interrupted):
            train_teacher(compose_cfg(*FAST), tmp_path / "cache")
    calls = []
    real = TrainingCheckpoint.after_epoch
    monkeypatch.setattr(
        checkpoint_mod.TrainingCheckpoint,
        "after_epoch",
        lambda self, state, epochs: calls.append(state.epoch) or real(self, state, epochs),
    )
    with caplog.at_level(logging.INFO, logger="kdrun"):
        train_teacher(compose_cfg(*FAST, "teacher.resume=false"), tmp_path / "cache")
    assert "resuming" not in caplog.text and "resume=false: ignoring" in caplog.text
    assert calls == list(range(1, EPOCHS + 1))  # every epoch trained again


@pytest.mark.slow
def test_a_state_that_does_not_fit_is_discarded_and_training_starts_over(
    compose_cfg, tmp_path, monkeypatch, caplog
):
    cfg = compose_cfg(*FAST)
    reference, _ = train_teacher(cfg, tmp_path / "reference")
    with monkeypatch.context() as m:
        interrupt_after(m, 2)
        with pytest.raises(Interrupted):
            train_teacher(cfg, tmp_path / "cache")
    (path,) = (tmp_path / "cache" / KIND).glob("*.pt")
    cache = ArtifactCache(tmp_path / "cache")
    saved = cache.load(KIND, path.stem)
    saved["device"] = "mps"  # e.g. made on another machine sharing the cache
    cache.save(KIND, path.stem, {k: v for k, v in saved.items() if not k.startswith("_")})
    with caplog.at_level(logging.INFO, logger="kdrun"):
        again, _ = train_teacher(cfg, tmp_path / "cache")
    assert "was made on mps, this run is on cpu; starting over" in caplog.text
    assert "resuming" not in caplog.text and not path.exists()
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name


def test_checkpoints_every_n_epochs(compose_cfg, tmp_path, monkeypatch):
    saved = []
    real_save = ArtifactCache.save

    def save(self, kind, key, entry):
        if kind == KIND:
            saved.append(entry["epoch"])
        return real_save(self, kind, key, entry)

    monkeypatch.setattr(ArtifactCache, "save", save)
    train_teacher(compose_cfg(*FAST, "teacher.checkpoint_every=2"), tmp_path / "cache")
    assert saved == [2]  # epoch 4 is the last: the finished teacher is stored instead


def test_checkpoint_every_must_be_positive(compose_cfg):
    with pytest.raises(ConfigError, match="teacher.checkpoint_every=0"):
        check_ranges(compose_cfg("experiment=smoke", "teacher.checkpoint_every=0"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED",))


def test_a_legacy_checkpoint_with_pickled_code_names_the_global(tmp_path, capfd):
    """issue 22, class 7: name the global, never blame damage or suggest weights_only=False."""
    from kdrun.errors import ConfigError
    from kdrun.stages.teacher_checkpoint import load_checkpoint

    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2), "x": _Evil()}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(ConfigError) as info:
        load_checkpoint(str(path), "cnn_small", 10)
    message = str(info.value)
    assert "would import and call posix.system" in message or "os.system" in message
    assert "weights_only=False" not in message and "damaged" not in message
    assert "PWNED" not in capfd.readouterr().out
