"""Progress that tells the time: lines in steps with running figures, the remaining time, a
line at least every HEARTBEAT_SECONDS off a terminal, bars for the waits. A fake clock drives
every timing here: nothing reads the wall clock."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from kdrun.data.augment import Normalize
from kdrun.data.folder import decode_split
from kdrun.losses import build_loss
from kdrun.models import build_model
from kdrun.runtime import progress as progress_mod
from kdrun.runtime.device import resolve_runtime
from kdrun.runtime.progress import Meter, Running, duration
from kdrun.train import EpochSums, Schedule, fit, predict
from tests.conftest import compose_config


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kdrun"]


def run_stage(meter: Meter, clock: FakeClock, steps: int, per_step: float) -> None:
    for _ in range(steps):
        clock.now += per_step
        meter.advance()


def test_a_stage_logs_every_tenth_of_its_steps_with_time_left(caplog):
    caplog.set_level(logging.INFO, logger="kdrun")
    clock = FakeClock()
    meter = Meter("student", 6313, "step", lines=10, clock=clock)
    clock.now += 130
    meter.advance(1600)  # one jump past the first two tenths: one line, not two
    assert logged(caplog) == ["student step 1,600/6,313 (25%) · 2m 10s, ~6m 23s left"]
    run_stage(meter, clock, 6313 - 1600, 0.01)
    lines = logged(caplog)
    assert [line.split()[2] for line in lines[1:]] == [
        f"{-(-k * 6313 // 10):,}/6,313" for k in range(3, 11)
    ]
    assert lines[-1].endswith("(100%) · 2m 57s")  # the last line has nothing left to estimate


def test_a_slow_stage_writes_a_line_at_least_every_heartbeat(caplog, monkeypatch):
    """1,000 steps of 1 s each: lines at every tenth (100 steps) are too rare for a Slurm log."""
    caplog.set_level(logging.INFO, logger="kdrun")
    clock = FakeClock()
    meter = Meter("teacher", 1000, "step", lines=10, clock=clock)
    run_stage(meter, clock, 1000, 1.0)
    steps = [int(line.split()[2].split("/")[0].replace(",", "")) for line in logged(caplog)]
    beat = int(progress_mod.HEARTBEAT_SECONDS)
    expected, last = [], 0
    for step in range(1, 1001):
        if step % 100 == 0 or step - last == beat:
            expected.append(step)
            last = step
    assert steps == expected
    assert max(b - a for a, b in zip([0, *steps], steps, strict=False)) == beat

    monkeypatch.setattr(progress_mod, "HEARTBEAT_SECONDS", 10.0)  # one constant sets the rhythm
    caplog.clear()
    run_stage(Meter("teacher", 1000, "step", lines=10, clock=clock), clock, 1000, 1.0)
    assert len(logged(caplog)) == 100


def test_a_wait_writes_only_heartbeats_and_counts_its_unit(caplog):
    """A wait's caller logs its result: off a terminal the wait itself only breaks a silence."""
    caplog.set_level(logging.INFO, logger="kdrun")
    clock = FakeClock()
    meter = Meter("decoding", 600, "image", clock=clock)
    run_stage(meter, clock, 600, 0.25)
    assert logged(caplog) == [
        "decoding 120/600 images (20%) · 30s, ~2m 00s left",
        "decoding 240/600 images (40%) · 1m 00s, ~1m 30s left",
        "decoding 360/600 images (60%) · 1m 30s, ~1m 00s left",
        "decoding 480/600 images (80%) · 2m 00s, ~30s left",
    ]


def test_running_figures_are_read_only_when_shown(caplog):
    """Reading the sums syncs a GPU: once per line off a terminal, not once per step."""
    caplog.set_level(logging.INFO, logger="kdrun")
    clock = FakeClock()
    reads = []
    sums = Running()

    def running() -> Running:
        reads.append(meter.done)
        return sums

    meter = Meter("baseline", 300, "step", lines=10, clock=clock)
    meter.watch(running)
    for step in range(1, 301):
        loss_sum = 100.0 if step <= 30 else 50.0  # a batch of 50 images: loss 2, then 1
        sums = sums + Running(loss_sum, images=50, correct=25 if step <= 30 else 40, labelled=50)
        clock.now += 0.0625
        meter.advance()
    assert reads == list(range(30, 301, 30))
    lines = logged(caplog)
    assert lines[0].startswith("baseline step 30/300 (10%): loss 2.000 train acc 0.500 · 2s")
    assert lines[1].startswith("baseline step 60/300 (20%): loss 1.000 train acc 0.800 · 4s")


def test_a_bar_refreshes_its_figures_at_a_throttled_interval():
    clock = FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    bar = Progress(console=console)
    reads = []
    meter = Meter("student", 100, "step", bar=bar, clock=clock)  # no lines: bar only

    def running() -> Running:
        reads.append(meter.done)
        return Running(loss_sum=0.5 * meter.done, images=meter.done, correct=0, labelled=0)

    meter.watch(running)
    run_stage(meter, clock, 100, 0.125)  # a refresh every REFRESH_SECONDS, i.e. 4 steps
    every = round(progress_mod.REFRESH_SECONDS / 0.125)
    assert reads == list(range(every, 101, every))
    task = bar.tasks[0]
    assert task.completed == 100 and task.fields["info"] == "loss 0.500"


def test_running_since_gives_the_window_figures():
    earlier = Running(loss_sum=10.0, images=10, correct=5, labelled=10)
    later = earlier + Running(loss_sum=4.0, images=8, correct=3, labelled=4)
    assert later.since(earlier) == "loss 0.500 train acc 0.750"
    assert later.since(later) == ""
    assert Running(1.0, 2, 0, 0).since(Running()) == "loss 0.500"  # pool-only: no accuracy


@pytest.mark.parametrize(
    "seconds,text", [(0.4, "0s"), (45, "45s"), (130, "2m 10s"), (3725, "1h 02m")]
)
def test_duration_reads_at_a_glance(seconds, text):
    assert duration(seconds) == text


class Blobs:
    """Ten classes of 32x32 images, each marked by a bright row: a set fit() can learn."""

    def __init__(self, n: int = 400) -> None:
        gen = torch.Generator().manual_seed(0)
        self.labels = torch.randint(0, 10, (n,), generator=gen)
        self.x = torch.randn(n, 3, 32, 32, generator=gen) * 0.3
        self.x[torch.arange(n), self.labels % 3, self.labels // 3 * 3] += 2.0  # a class's row

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx, gen):
        return self.x[idx], {"labels": self.labels[idx]}


def test_fit_logs_steps_with_running_loss_before_the_first_epoch_ends(caplog, monkeypatch):
    """One epoch of 60 steps: per-epoch figures would appear only at its end. The device sums
    are read once per shown line and once at the epoch's end, never once per step."""
    caplog.set_level(logging.INFO, logger="kdrun")
    reads = []
    real_read = EpochSums.read

    def counted_read(self):
        reads.append(self.images)
        return real_read(self)

    monkeypatch.setattr(EpochSums, "read", counted_read)
    runtime = resolve_runtime(compose_config(["device=cpu"]).device)
    torch.manual_seed(0)
    model = build_model("cnn_small", 10)
    distiller = build_loss(OmegaConf.create({"name": "ce"}))
    history = fit(
        model, Blobs(1200), distiller, Schedule(60, 20, 0.05), runtime, seed=0, stage="student"
    )
    lines = [line for line in logged(caplog) if line.startswith("student ")]
    assert [line.split()[2] for line in lines] == [f"{k}/60" for k in range(6, 61, 6)]
    assert all(": loss " in line and " train acc " in line for line in lines)
    assert len(history) == 1 and history[0]["step"] == 60  # the figures came within the epoch
    assert reads == [20 * k for k in range(6, 61, 6)] + [1200]  # 11 reads for 60 steps


def test_predict_counts_images_and_gives_the_same_logits():
    runtime = resolve_runtime(compose_config(["device=cpu"]).device)
    torch.manual_seed(0)
    model = build_model("cnn_small", 4)
    images = torch.randint(0, 256, (23, 3, 32, 32), dtype=torch.uint8)
    normalize = Normalize(images, runtime.device)
    clock = FakeClock()
    meter = Meter("teacher test", len(images), "image", clock=clock)
    counted = predict(model, images, normalize, runtime, batch_size=5, meter=meter)
    assert meter.done == 23
    assert torch.equal(counted, predict(model, images, normalize, runtime, batch_size=5))


def test_decoding_counts_every_file(tmp_path: Path):
    classes = {}
    for c in ("cats", "dogs"):
        d = tmp_path / c
        d.mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), i * 40, dtype=np.uint8)).save(d / f"{i}.png")
        classes[c] = sorted(d.iterdir())
    (tmp_path / "cats" / "bad.png").write_bytes(b"not an image")
    classes["cats"].append(tmp_path / "cats" / "bad.png")
    meter = Meter("decoding", 7, "image", clock=FakeClock())
    split, skipped = decode_split(classes, 8, meter)
    assert meter.done == 7 and len(split.labels) == 6 and len(skipped) == 1
