"""The statistics behind `make bench`'s verdicts, fed synthetic rounds (no timing here)."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.common import Summary, Target, interleave, judge, quartiles, summarize, verdict


def test_summary_median_and_iqr_of_known_rounds():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s.median == 3.0
    assert (s.q1, s.q3) == (2.0, 4.0)
    assert s.low <= s.median <= s.high
    assert s.low >= 1.0 and s.high <= 5.0  # a median of resamples stays inside the data


def test_bootstrap_is_repeatable_and_seeded():
    rounds = [0.91, 0.97, 1.02, 0.95, 0.99, 1.05, 0.93]
    assert summarize(rounds) == summarize(rounds)
    # With few resamples the seed shows: different seeds, different intervals.
    few = {(summarize(rounds, 20, seed).low, summarize(rounds, 20, seed).high) for seed in range(8)}
    assert len(few) > 1


def test_identical_rounds_give_a_zero_width_interval():
    s = summarize([1.2] * 6)
    assert (s.low, s.median, s.high, s.q1, s.q3) == (1.2,) * 5


def test_wider_spread_gives_a_wider_interval():
    tight = summarize([0.99, 1.0, 1.01, 1.0, 0.995, 1.005])
    loose = summarize([0.8, 1.0, 1.2, 0.9, 1.1, 1.0])
    assert (loose.high - loose.low) > (tight.high - tight.low)


def test_quartiles_of_one_round():
    assert quartiles([0.7]) == (0.7, 0.7)


def test_no_rounds_is_an_error():
    with pytest.raises(ValueError, match="at least one round"):
        summarize([])


@pytest.mark.parametrize(
    ("low", "high", "target", "expected"),
    [
        (0.96, 1.02, Target(">=", 0.95), "OK"),
        (0.95, 1.02, Target(">=", 0.95), "OK"),  # the bound itself meets >=
        (0.90, 0.94, Target(">=", 0.95), "MISS"),
        (0.93, 0.99, Target(">=", 0.95), "INCONCLUSIVE"),
        (0.01, 0.04, Target("<=", 0.05), "OK"),
        (0.06, 0.09, Target("<=", 0.05), "MISS"),
        (0.04, 0.06, Target("<=", 0.05), "INCONCLUSIVE"),
        (1.0, 1.3, Target(">", 1.0), "INCONCLUSIVE"),  # strict: 1.0 does not meet > 1
        (1.01, 1.3, Target(">", 1.0), "OK"),
    ],
)
def test_verdict_is_judged_by_the_whole_interval(low, high, target, expected):
    mid = (low + high) / 2
    assert verdict(Summary(mid, low, high, low, high), target) == expected


def test_noisy_rounds_around_the_target_are_inconclusive_not_miss():
    # Drift of +-8% around 0.95: one figure could land either side; the interval straddles.
    rounds = [0.88, 1.02, 0.93, 0.97, 0.90, 1.01, 0.95]
    assert verdict(summarize(rounds), Target(">=", 0.95)) == "INCONCLUSIVE"


def test_interleave_alternates_order_and_pairs_the_calls():
    calls: list[str] = []
    pairs = interleave(lambda: calls.append("a"), lambda: calls.append("b"), rounds=5, warmup=1)
    assert len(pairs) == 5
    assert "".join(calls) == "ab" + "ab" + "ba" + "ab" + "ba" + "ab"


def test_interleave_logs_every_round():
    lines: list[str] = []
    interleave(lambda: None, lambda: None, rounds=3, warmup=0, log=lines.append)
    assert [line.split(":")[0].strip() for line in lines] == ["round 1", "round 2", "round 3"]
    assert ["A-B" in lines[0], "B-A" in lines[1], "A-B" in lines[2]] == [True, True, True]


def test_judge_applies_the_ratio_per_round(capsys):
    # A twice as fast as B in every round but one: the per-round ratio B/A, not the ratio of sums.
    pairs = [(1.0, 2.0), (2.0, 4.0), (1.0, 2.0), (3.0, 6.0), (1.0, 10.0)]
    s, v = judge("demo", pairs, lambda ta, tb: tb / ta, Target(">=", 1.5))
    assert s.median == 2.0
    assert v == "OK"
    out = capsys.readouterr().out
    assert "2.000 2.000 2.000 2.000 10.000" in out
    assert "[OK] demo: median 2.000" in out
    assert statistics.median([2.0, 2.0, 2.0, 2.0, 10.0]) == s.median
