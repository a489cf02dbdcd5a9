import math

import torch
from omegaconf import OmegaConf

from kdrun.losses import LOSSES, build_loss


def _softmax(row, t):
    e = [math.exp(v / t) for v in row]
    return [x / sum(e) for x in e]


def test_kd_matches_a_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 2.0]])
    y = torch.tensor([1, 2])
    alpha, temp = 0.7, 3.0
    loss = build_loss(OmegaConf.create({"name": "kd", "alpha": alpha, "temperature": temp}))
    terms = loss(s, {"labels": y, "teacher_logits": t})

    ce = 0.0
    kl = 0.0
    for i in range(2):
        p_s1 = _softmax(s[i].tolist(), 1.0)
        ce += -math.log(p_s1[y[i]])
        p_t, p_s = _softmax(t[i].tolist(), temp), _softmax(s[i].tolist(), temp)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    ce, kl = ce / 2, kl / 2
    assert math.isclose(terms["ce"].item(), (1 - alpha) * ce, rel_tol=1e-5)
    assert math.isclose(terms["kd"].item(), alpha * temp**2 * kl, rel_tol=1e-5)


def test_kd_is_zero_when_student_equals_teacher_and_alpha_is_one():
    logits = torch.randn(8, 5)
    loss = build_loss(OmegaConf.create({"name": "kd", "alpha": 1.0, "temperature": 4.0}))
    terms = loss(logits, {"labels": torch.zeros(8, dtype=torch.long), "teacher_logits": logits})
    assert abs(sum(terms.values()).item()) < 1e-6


def test_ce_needs_no_teacher_and_registry_lists_both():
    assert {"kd", "ce"} <= set(LOSSES)
    loss = build_loss(OmegaConf.create({"name": "ce"}), label_smoothing=0.1)
    assert not loss.needs_teacher
    out = loss(torch.randn(4, 3), {"labels": torch.tensor([0, 1, 2, 0])})
    assert set(out) == {"ce"} and out["ce"].item() > 0


def test_ce_ignores_unlabelled_images_and_soft_targets_match_hard_ones():
    from kdrun.losses.ce import label_cross_entropy

    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 3, -1, 2, -1, 1])
    known = labels >= 0
    expected = torch.nn.functional.cross_entropy(logits[known], labels[known], label_smoothing=0.1)
    got = label_cross_entropy(logits, {"labels": labels}, label_smoothing=0.1)
    assert torch.allclose(got, expected, atol=1e-6)
    dist = torch.zeros(6, 4)
    dist[known] = torch.nn.functional.one_hot(labels[known], 4).float()
    soft = label_cross_entropy(logits, {"labels": labels, "label_dist": dist}, 0.1)
    assert torch.allclose(soft, expected, atol=1e-6)
    none = label_cross_entropy(logits, {"labels": torch.full((6,), -1)})
    assert none.item() == 0.0
