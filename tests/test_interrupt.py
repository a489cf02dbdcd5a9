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
from kdrun.runtime.interrupt import (
    Terminated,
    raise_pending,
    report_interrupt,
    sigterm_raises,
    stage_of,
)
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


HYDRA_READER = """
def read_config():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler runs here, in "Hydra's" frame
    return "read"
"""


def _module(name: str, source: str, **names) -> dict:
    """The functions of `source`, run as if they were module `name`'s code."""
    namespace = {"__name__": name, "os": os, "signal": signal, "time": time, **names}
    exec(source, namespace)
    return namespace


def test_a_signal_in_hydras_config_loading_is_raised_where_kdrun_takes_over():
    """Between a sweep's jobs Ctrl-C lands in Hydra's config reader, which turns an exception
    raised mid-read into UnboundLocalError, a traceback and exit 1 (CI, stop 30): it waits."""
    reader = _module("hydra._internal.core_plugins.importlib_resources_config_source", HYDRA_READER)
    with sigterm_raises():
        assert reader["read_config"]() == "read"  # not interrupted mid-read
        with pytest.raises(KeyboardInterrupt):
            raise_pending()
        raise_pending()  # raised once


def test_a_signal_elsewhere_in_hydra_or_in_kdrun_called_from_it_is_raised_at_once():
    source = "def task():\n    _sigterm_self()\n"
    task = _module("kdrun.cli.task", source, _sigterm_self=_sigterm_self)
    run_job = _module("hydra.core.utils", "def run_job():\n    task()\n", task=task["task"])
    with pytest.raises(Terminated), sigterm_raises():
        run_job["run_job"]()  # Hydra calling kdrun's task
    # A sweep's launcher waiting for jobs that run elsewhere (joblib, Slurm): no kdrun job in
    # this process would ever raise a held signal.
    sweeper = _module("hydra._internal.core_plugins.basic_sweeper", HYDRA_READER)
    with pytest.raises(KeyboardInterrupt), sigterm_raises():
        sweeper["read_config"]()


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


@pytest.mark.parametrize(
    "sig,code,word",
    [(signal.SIGHUP, 129, "hung up (SIGHUP"), (signal.SIGQUIT, 131, "quit (SIGQUIT)")],
)
def test_sighup_and_sigquit_stop_like_sigterm_with_one_line(sig, code, word, capsys, monkeypatch):
    """issue 22, class 7: a closed terminal or SIGQUIT is said, not a silent death."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    before = signal.getsignal(sig)
    with pytest.raises(Terminated) as info, sigterm_raises():
        os.kill(os.getpid(), sig)
        time.sleep(5)
    assert signal.getsignal(sig) is before
    assert report_interrupt(info.value) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"[WARNING] {word}"), err


def test_a_second_ctrl_c_while_the_first_is_handled_is_ignored():
    """issue 22, class 6: the second Ctrl-C must not turn the first one's line into a traceback."""
    with pytest.raises(KeyboardInterrupt), sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        finally:  # cleanup and the message run here, as in kdrun.cli.main.main
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # a handler that raised would do so here


def test_a_sweep_worker_whose_launcher_died_stops_at_its_next_step(monkeypatch, caplog):
    """issue 22, class 3: re-parented joblib workers must not go on writing in a job dir."""
    from kdrun.runtime import interrupt
    from kdrun.runtime.interrupt import Orphaned, watch_parent
    from kdrun.runtime.progress import Meter

    monkeypatch.setattr(interrupt, "_parent", None)
    meter = Meter("student", 10, "step")
    meter.advance()  # not watched: nothing happens
    watch_parent()
    meter.advance()  # the parent is alive
    gone = interrupt._parent + 1  # not 1: a nohup'd pytest is itself already init's child
    monkeypatch.setattr(os, "getppid", lambda: gone)  # re-parented
    with pytest.raises(Orphaned) as info:
        meter.advance()
    with caplog.at_level(logging.WARNING, logger="kdrun"):
        assert report_interrupt(info.value) == 143
    assert "the sweep's launcher" in caplog.records[0].getMessage()
    monkeypatch.setattr(interrupt, "_parent", None)
