"""The teacher's scores on the labelled shots' views, against hand computations."""

import math

import torch

from kdrun.measure.label_quality import label_quality


def _mixing(partner: list[list[int]], lam: list[list[float]]) -> tuple[torch.Tensor, ...]:
    return torch.tensor(partner), torch.tensor(lam)


def test_clean_images_are_scored_on_their_own_label_and_unlabelled_ones_skipped() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, -1])  # the third is a pool image
    q = label_quality(logits, labels)
    p = torch.tensor([2.0, 0.0]).softmax(-1)
    assert q is not None and q["labelled"] == 2
    assert q["agrees"] == 0.5
    assert math.isclose(q["mass_on_content"], float(p[0] + p[1]) / 2, rel_tol=1e-6)
    assert math.isclose(q["confidence"], float(p[0]), rel_tol=1e-6)
    entropy = -float((p * p.log()).sum())
    assert math.isclose(q["entropy"], entropy, rel_tol=1e-6)
    assert math.isclose(q["max_entropy"], math.log(2))


def test_a_mixed_view_is_scored_on_its_larger_part_and_both_classes() -> None:
    # image 0 (class 0) mixed with image 1 (class 2), keeping 30% of itself: class 2 dominates
    logits = torch.log(torch.tensor([[[0.2, 0.1, 0.7]], [[0.5, 0.4, 0.1]], [[1.0, 1.0, 1.0]]]))
    labels = torch.tensor([0, 2, -1])
    mixing = _mixing([[1], [1], [0]], [[0.3], [1.0], [0.5]])
    q = label_quality(logits, labels, *mixing)
    # view of image 1 is unmixed (itself, class 2); image 2 is unlabelled
    assert q is not None and q["labelled"] == 2
    assert q["agrees"] == 0.5  # image 0's view: argmax 2 = class 2; image 1's: argmax 0 != 2
    assert math.isclose(q["mass_on_content"], ((0.2 + 0.7) + 0.1) / 2, rel_tol=1e-5)
    assert math.isclose(q["confidence"], (0.7 + 0.5) / 2, rel_tol=1e-5)


def test_a_view_mixed_with_an_unlabelled_partner_is_skipped_and_nothing_labelled_is_none() -> None:
    logits = torch.zeros(2, 1, 3)
    labels = torch.tensor([1, -1])
    assert label_quality(logits, labels, *_mixing([[1], [0]], [[0.5], [0.5]])) is None
    assert label_quality(torch.zeros(2, 3), torch.tensor([-1, -1])) is None
