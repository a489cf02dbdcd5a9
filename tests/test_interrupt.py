"""Ctrl-C and SIGTERM in-process (fast tier): the exit status a shell reports (130, 143), one
line naming the stage and episode, into the log once logging is set up. The console script's
end-to-end runs are in tests/test_messages.py (slow tier)."""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest
import torch

from kdrun.pipeline import run
from kdrun.runtime.interrupt import Terminated, report_interrupt, sigterm_raises, stage_of
from tests.conftest import SMOKE_FAST


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises at the next bytecode; this never completes


def test_sigterm_raises_terminated_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info, sigterm_raises():
        _sigterm_self()
    assert isinstance(info.value, KeyboardInterrupt)  # the same cleanup as Ctrl-C runs
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(
    "exc,code,word",
    [(KeyboardInterrupt(), 130, "interrupted"), (Terminated(), 143, "terminated (SIGTERM)")],
)
def test_the_exit_status_is_128_plus_the_signal(exc, code, word, capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # before Hydra sets up logging
    assert report_interrupt(exc) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"[WARNING] {word}: "), err
    assert "re-run the same command to resume" in err


def test_once_logging_is_set_up_the_line_goes_to_the_log(caplog):
    with caplog.at_level(logging.WARNING, logger="kdrun"):
        assert report_interrupt(Terminated()) == 143
    (record,) = caplog.records
    assert record.name == "kdrun" and record.getMessage().startswith("terminated (SIGTERM): ")


def test_an_interrupt_inside_training_names_the_stage_and_episode(
    compose_cfg, tmp_path, monkeypatch
):
    """A real run, stopped where Ctrl-C usually lands: deep inside torch, in the teacher's loop."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.Tensor, "backward", interrupted)
    with pytest.raises(KeyboardInterrupt) as info:
        run(compose_cfg(*SMOKE_FAST), tmp_path / "run")
    assert stage_of(info.value.__traceback__) == "teacher training of episode 0"
    assert report_interrupt(info.value) == 130
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_outside_every_stage_the_line_names_none():
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:
        assert stage_of(exc.__traceback__) is None
