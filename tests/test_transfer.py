"""transfer=...: the sources of distillation inputs beyond the shots. The synthesisers run on a
tiny BatchNorm network so determinism, caching and resumption are checked in milliseconds; one
in-process run per source checks the wiring end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from kdrun import pipeline
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import sample_episode
from kdrun.episode_inputs import RunInputs
from kdrun.errors import ConfigError
from kdrun.pipeline import run
from kdrun.preflight import preflight
from kdrun.runtime.device import resolve_runtime
from kdrun.store.cache import ArtifactCache
from kdrun.transfer import build_transfer
from kdrun.transfer.bn_stats import BatchNormStatistics
from kdrun.transfer.mix import OnlineMix
from tests.conftest import SMOKE_FAST, compose_config, load_script

transfer_table = load_script("transfer_table")


def tiny_bn_net(ways: int = 10) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, ways),
    )
    net.train()
    with torch.no_grad():  # running statistics that differ from a fresh layer's
        for _ in range(3):
            net(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    return net.eval()


@pytest.fixture
def inputs(tmp_path):
    cfg = compose_config([*SMOKE_FAST, "pool=0", f"cache_dir={tmp_path / 'cache'}"])
    return _inputs(cfg, tmp_path / "cache")


def _inputs(cfg, cache_dir: Path):
    cache = ArtifactCache(cache_dir)
    dataset, _ = pipeline._load_data(cfg, cache)
    runtime = resolve_runtime(cfg.device)
    normalize = Normalize(dataset.train.images, runtime.device)
    shared = RunInputs(dataset, normalize, runtime, cache, 200, cfg.data.augment)
    labels = dataset.train.labels, dataset.test.labels
    return shared.for_episode(sample_episode(*labels, 10, 10, 5, seed=0))


def _source(name: str, **params):
    cfg = compose_config([f"transfer={name}", *[f"transfer.{k}={v}" for k, v in params.items()]])
    return build_transfer(cfg.transfer)


SMALL = {"images": 12, "batch_size": 4, "steps": 3}


def test_batchnorm_statistics_loss_matches_a_hand_computation():
    conv = nn.Conv2d(3, 2, 1, bias=False)
    bn = nn.BatchNorm2d(2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 2.0, 1.0]]).view(2, 3, 1, 1))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
        bn.running_var.copy_(torch.tensor([2.0, 0.25]))
    net = nn.Sequential(conv, bn).eval()
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2) / 10
    with BatchNormStatistics(net) as stats:
        net(x)
        got = stats.pop()
    a = x[:, 0].flatten()  # channel 0 of the conv's output: input channel 0
    b = (2 * x[:, 1] + x[:, 2]).flatten()
    mean = torch.stack([a.mean(), b.mean()])
    var = torch.stack([((a - a.mean()) ** 2).mean(), ((b - b.mean()) ** 2).mean()])
    want = (mean - torch.tensor([0.5, -1.0])).square().sum().sqrt() + (
        var - torch.tensor([2.0, 0.25])
    ).square().sum().sqrt()
    assert torch.allclose(got, want, atol=1e-6)
    assert stats.pop().item() == 0  # popped: nothing until the next forward pass


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inversion", "generator"])
def test_synthesis_is_deterministic_cached_and_drawn_per_class(name, inputs, tmp_path):
    source = _source(name, **SMALL)
    teacher = tiny_bn_net()
    first = source.make(teacher, "tiny", inputs, student_arch="cnn_small")
    assert first.images.dtype == torch.uint8 and first.images.shape == (12, 3, 32, 32)
    assert torch.bincount(first.targets, minlength=10).max() <= 2  # balanced over classes
    again = source.make(teacher, "tiny", inputs, student_arch="cnn_small")
    assert again.hit and not first.hit and torch.equal(again.images, first.images)
    fresh = _inputs(compose_config([*SMOKE_FAST, "pool=0"]), tmp_path / "other-cache")
    elsewhere = source.make(teacher, "tiny", fresh, student_arch="cnn_small")
    assert not elsewhere.hit and torch.equal(elsewhere.images, first.images)
    other_teacher = source.make(tiny_bn_net(), "another-teacher", inputs, student_arch="cnn_small")
    assert other_teacher.key != first.key and not other_teacher.hit


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inversion", "generator"])
def test_a_killed_synthesis_resumes_from_its_finished_batches(name, inputs, tmp_path, monkeypatch):
    teacher = tiny_bn_net()
    clean_inputs = _inputs(compose_config([*SMOKE_FAST, "pool=0"]), tmp_path / "clean")
    uninterrupted = _source(name, **SMALL).make(
        teacher, "tiny", clean_inputs, student_arch="cnn_small"
    )

    source = _source(name, **SMALL)
    real = type(source).make_batch
    made = []

    def dies_at_batch_2(self, b, *args):
        if b == 2:
            raise KeyboardInterrupt  # what SIGINT raises mid-synthesis
        made.append(b)
        return real(self, b, *args)

    monkeypatch.setattr(type(source), "make_batch", dies_at_batch_2)
    with pytest.raises(KeyboardInterrupt):
        source.make(teacher, "tiny", inputs, student_arch="cnn_small")
    monkeypatch.setattr(type(source), "make_batch", real)
    resumed = source.make(teacher, "tiny", inputs, student_arch="cnn_small")
    assert made == [0, 1]
    assert inputs.cache.events["transfer_batch"]["hit"] == 2  # batches 0 and 1 were reused
    assert torch.equal(resumed.images, uninterrupted.images)


def test_adversarial_term_uses_a_proxy_student_and_changes_the_images(inputs):
    teacher = tiny_bn_net()
    plain = _source("inversion", **SMALL).make(teacher, "tiny", inputs, student_arch="cnn_small")
    adversarial = _source("inversion", adversarial_weight=1.0, proxy_steps=2, **SMALL).make(
        teacher, "tiny", inputs, student_arch="cnn_small"
    )
    assert adversarial.key != plain.key
    assert not torch.equal(adversarial.images, plain.images)


def test_online_mixes_are_labelled_by_the_teacher_in_the_loop(inputs):
    teacher = tiny_bn_net()
    source = _source("mix")
    assert isinstance(source, OnlineMix) and source.online
    mixes = source.training_set(teacher, inputs)
    gen = torch.Generator().manual_seed(3)
    x, batch = mixes.batch(torch.arange(32), gen)
    assert x.shape == (32, 3, 32, 32)
    assert torch.allclose(batch["label_dist"].sum(1), torch.ones(32))
    assert (batch["labels"] == -1).all()  # a mix has no single label: CE reads label_dist
    with torch.no_grad():
        assert torch.allclose(batch["teacher_logits"], teacher(x), atol=1e-5)
    x2, _ = mixes.batch(torch.arange(32), torch.Generator().manual_seed(3))
    assert torch.equal(x, x2)  # the step's generator alone decides the mixes
    x3, _ = mixes.batch(torch.arange(32), gen)
    assert not torch.equal(x, x3)  # fresh mixes every step


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["teacher=cnn_large", "transfer=inversion"], "has no BatchNorm layer"),
        (["teacher=cnn_small", "transfer=generator"], "or transfer=mix"),
        (["transfer=shots", "pool=100"], "transfer=shots uses no real image beyond the shots"),
        (["transfer=mix", "pool=all"], "set pool=0 (an experiment may have set it)"),
        (["transfer=mix", "soft_labels.mix=cutmix", "soft_labels.views=4"], "transfer.mix"),
        (["transfer=mix", "loss=fitnet"], "use a logit method"),
        (["transfer=mix", "transfer.mix=blend"], "transfer.mix='blend' is unknown"),
        (["transfer=inversion", "transfer.init=zeros"], "transfer.init='zeros' is unknown"),
        (["transfer=inversion", "transfer.batch_size=1"], "transfer.batch_size=1 is invalid"),
        (["transfer=generator", "transfer.steps=0"], "transfer.steps=0 is invalid"),
    ],
)
def test_preflight_refuses_what_a_transfer_cannot_do(overrides, needle, compose_cfg):
    pool = [] if any(o.startswith("pool=") for o in overrides) else ["pool=0"]
    cfg = compose_cfg("experiment=smoke", *pool, *overrides)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        preflight(cfg)


@pytest.mark.parametrize(
    "name, extra",
    [
        ("shots", []),
        ("mix", ["transfer.images=100"]),
        ("inversion", ["teacher=resnet8x4", "transfer.steps=2", "transfer.images=20"]),
        ("generator", ["teacher=resnet8x4", "transfer.steps=2", "transfer.images=20"]),
    ],
)
@pytest.mark.slow
def test_each_transfer_runs_end_to_end(name, extra, compose_cfg, tmp_path):
    cfg = compose_cfg(*SMOKE_FAST, "pool=0", f"transfer={name}", *extra)
    out = tmp_path / "run"
    run(cfg, out)
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["episodes"][0]
    assert record["transfer"]["method"] == name
    assert record["pool_size"] == 0
    assert metrics["setting"]["transfer"] == name
    assert (out / "transfer.png").exists() == (name != "shots")
    if name in ("inversion", "generator"):
        assert record["transfer"]["images"] == 20 and metrics["timing"]["transfer"] > 0
    if name == "mix":
        assert record["soft_labels"] is None  # the teacher labels each step's mixes instead
    again = run(cfg, tmp_path / "again")
    if name in ("inversion", "generator"):
        assert again["episodes"][0]["transfer"]["hit"]
    if name == "inversion":  # the README's table and curve script reads what the runs wrote
        table = transfer_table.rows([out, tmp_path / "again"])
        assert [t["transfer"].split(" (")[0] for t in table] == ["inversion", "inversion"]
        made, reused = sorted(table, key=lambda t: -t["synthesis_cpu_min"])
        assert made["synthesis_cpu_min"] > 0 and reused["synthesis_cpu_min"] == 0
        assert "images=20" in made["transfer"] and made["threads"] >= 1
        assert f"lr {cfg.student.lr:g}, alpha {cfg.loss.alpha:g}" in made["transfer"]
        assert 0 <= made["teacher_agrees"] <= 100  # scored on the labelled shots
        assert made["teacher_arch"] == f"{cfg.teacher.arch} (ls {cfg.teacher.label_smoothing:g})"
        transfer_table.plot(table, tmp_path / "curve.png")
        assert (tmp_path / "curve.png").stat().st_size > 0
        assert transfer_table.markdown(table).count("| 5 | inversion") == 2
