"""Sweep-level messages (issue 22, class 7): a repeated job is said in one line."""

from __future__ import annotations

from kdrun.cli.callbacks import warn_duplicates


def test_a_sweep_with_a_repeated_value_warns_in_one_line(capsys):
    warn_duplicates([["shots=1"], ["shots=1"], ["shots=2"]])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "#1 repeats #0 (shots=1)" in err


def test_the_same_overrides_in_another_order_are_a_repeat_too(capsys):
    warn_duplicates([["shots=1", "seed=0"], ["seed=0", "shots=1"]])
    assert "#1 repeats #0" in capsys.readouterr().err


def test_distinct_jobs_say_nothing(capsys):
    warn_duplicates([["shots=1"], ["shots=2"]])
    assert capsys.readouterr().err == ""
