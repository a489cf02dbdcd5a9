import pytest
import torch

from kdrun.data.fewshot import sample_episode

TRAIN = torch.arange(10).repeat_interleave(30)  # 10 classes x 30 images
TEST = torch.arange(10).repeat_interleave(7)


def test_counts_and_label_remapping():
    ep = sample_episode(TRAIN, TEST, 10, ways=4, shots=3, seed=1)
    assert len(ep.classes) == 4 and ep.classes == sorted(ep.classes)
    assert len(ep.shot_indices) == 12 and len(set(ep.shot_indices.tolist())) == 12
    assert torch.equal(TRAIN[ep.shot_indices], torch.tensor(ep.classes).repeat_interleave(3))
    assert ep.shot_labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert len(ep.teacher_indices) == 4 * 30 and len(ep.test_indices) == 4 * 7
    assert torch.equal(torch.tensor(ep.classes)[ep.test_labels], TEST[ep.test_indices])
    assert torch.equal(torch.tensor(ep.classes)[ep.teacher_labels], TRAIN[ep.teacher_indices])


def test_deterministic_per_seed_and_different_across_seeds():
    a = sample_episode(TRAIN, TEST, 10, 5, 2, seed=3)
    b = sample_episode(TRAIN, TEST, 10, 5, 2, seed=3)
    c = sample_episode(TRAIN, TEST, 10, 5, 2, seed=4)
    assert a.classes == b.classes and torch.equal(a.shot_indices, b.shot_indices)
    assert a.classes != c.classes or not torch.equal(a.shot_indices, c.shot_indices)


def test_all_classes_when_ways_equals_num_classes():
    ep = sample_episode(TRAIN, TEST, 10, 10, 1, seed=9)
    assert ep.classes == list(range(10))
    assert len(ep.test_indices) == len(TEST)


def test_settings_preflight_refuses_are_a_bug_in_the_sampler():
    """The sampler asserts; the user-facing refusal is preflight's (tests/test_config.py)."""
    with pytest.raises(AssertionError, match=r"30 < 31 \+ 0"):
        sample_episode(TRAIN, TEST, 10, 2, 31, seed=0)
    with pytest.raises(AssertionError, match="ways=11"):
        sample_episode(TRAIN, TEST, 10, 11, 1, seed=0)
    with pytest.raises(AssertionError, match="ways=1"):
        sample_episode(TRAIN, TEST, 10, 1, 1, seed=0)
