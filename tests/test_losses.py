"""Every loss in one place: each distillation method against its paper's formula, computed
independently in plain Python (or checked through an identity the paper states), CE on labels,
the registry and the range checks."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from omegaconf import OmegaConf

from kdrun.errors import ConfigError
from kdrun.losses import LOSSES, build_loss
from kdrun.losses.dkd import dkd_terms
from kdrun.losses.kd import kd_divergence
from kdrun.models import build_model
from tests.conftest import CONF_DIR


def _softmax(row: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [x / sum(e) for x in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _huber(a: float, b: float) -> float:
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def _loss(name: str, **params):
    return build_loss(OmegaConf.create({"name": name, **params}))


S = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 0.3], [0.2, 0.1, -0.4, 1.5]])
T = torch.tensor([[2.0, 1.0, 0.0, 0.5], [1.0, 0.0, 2.0, -0.5], [0.0, 0.3, 0.1, 2.5]])
Y = torch.tensor([1, 2, 3])


def test_every_method_has_a_yaml_and_every_yaml_a_method():
    yamls = {p.stem for p in (CONF_DIR / "loss").glob("*.yaml")}
    assert yamls == set(LOSSES) == {"ce", "kd", "dkd", "fitnet", "at", "rkd", "dist"}


def test_dkd_matches_the_paper_split_by_hand():
    t = 4.0
    tckd, nckd = dkd_terms(S, T, Y, t)
    want_t = want_n = 0.0
    for i in range(3):
        ps, pt = _softmax(S[i].tolist(), t), _softmax(T[i].tolist(), t)
        g = int(Y[i])
        want_t += _kl([pt[g], 1 - pt[g]], [ps[g], 1 - ps[g]])
        others = [c for c in range(4) if c != g]
        qs = _softmax([S[i, c].item() for c in others], t)
        qt = _softmax([T[i, c].item() for c in others], t)
        want_n += _kl(qt, qs)
    assert math.isclose(tckd.item(), t * t * want_t / 3, rel_tol=1e-5)
    assert math.isclose(nckd.item(), t * t * want_n / 3, rel_tol=1e-5)


def test_dkd_reformulates_kd_per_image():
    """The paper's Eq. 4: KD = TCKD + (1 - p_t of the target) · NCKD, image by image."""
    t = 2.0
    for i in range(3):
        s, te, y = S[i : i + 1], T[i : i + 1], Y[i : i + 1]
        tckd, nckd = dkd_terms(s, te, y, t)
        p_target = torch.softmax(te / t, 1)[0, y].item()
        kd = kd_divergence(s, te, t)
        assert math.isclose(kd.item(), (tckd + (1 - p_target) * nckd).item(), rel_tol=1e-5)


def test_dkd_weights_warmup_and_pool_targets():
    loss = _loss("dkd", alpha=1.0, beta=8.0, temperature=4.0, warmup=0.5)
    labels = torch.tensor([1, -1, 3])  # a pool image: its target is the teacher's top class (2)
    batch = {"labels": labels, "teacher_logits": T}
    terms = loss(S, batch, progress=0.25)
    tckd, nckd = dkd_terms(S, T, torch.tensor([1, 2, 3]), 4.0)
    assert math.isclose(terms["tckd"].item(), 0.5 * tckd.item(), rel_tol=1e-5)
    assert math.isclose(terms["nckd"].item(), 0.5 * 8 * nckd.item(), rel_tol=1e-5)
    assert math.isclose(loss(S, batch, progress=0.9)["nckd"].item(), 8 * nckd.item(), rel_tol=1e-5)


def test_dist_matches_pearson_relations_by_hand():
    t = 4.0
    terms = _loss("dist", beta=1.0, gamma=2.0, temperature=t)(S, {"labels": Y, "teacher_logits": T})
    ys = [_softmax(r, t) for r in S.tolist()]
    yt = [_softmax(r, t) for r in T.tolist()]
    inter = 1 - statistics.mean(statistics.correlation(a, b) for a, b in zip(ys, yt, strict=True))
    cols = range(4)
    intra = 1 - statistics.mean(
        statistics.correlation([r[j] for r in ys], [r[j] for r in yt]) for j in cols
    )
    assert math.isclose(terms["inter"].item(), t * t * inter, rel_tol=1e-4)
    assert math.isclose(terms["intra"].item(), 2 * t * t * intra, rel_tol=1e-4)


def test_dist_is_zero_for_a_teacher_shifted_by_a_constant():
    terms = _loss("dist")(S, {"labels": Y, "teacher_logits": S + 3.0})
    assert abs(terms["inter"].item()) < 1e-4 and abs(terms["intra"].item()) < 1e-4


def _bound(name: str, student: str = "cnn_small", teacher: str = "cnn_large", **params):
    loss = _loss(name, **params)
    s_model, t_model = build_model(student, 4), build_model(teacher, 4)
    loss.resolve(s_model, t_model, torch.zeros(2, 3, 32, 32))
    loss.bind(s_model)
    return loss, s_model, t_model


def test_attention_transfer_matches_the_authors_formula_by_hand():
    loss, _, _ = _bound("at", beta=1000.0)
    assert loss.student_layers == ("conv1", "conv2") == loss.teacher_layers
    gen = torch.Generator().manual_seed(0)
    f_s = {"conv1": torch.randn(2, 3, 2, 2, generator=gen), "conv2": torch.randn(2, 5, 1, 1)}
    f_t = {"conv1": torch.randn(2, 4, 2, 2, generator=gen), "conv2": torch.randn(2, 6, 1, 1)}
    loss.sizes = [2, 1]
    targets = loss.teacher_targets(f_t)
    batch = {"labels": torch.tensor([0, 1])} | {f"teacher_feat:{k}": v for k, v in targets.items()}
    got = loss(torch.zeros(2, 4), batch, f_s)["at"].item()

    def q(f: torch.Tensor, i: int) -> list[float]:
        c, h, w = f.shape[1:]
        m = [
            sum(f[i, k, y, x].item() ** 2 for k in range(c)) / c for y in range(h) for x in range(w)
        ]
        n = math.sqrt(sum(v * v for v in m))
        return [v / n for v in m]

    want = 0.0
    for layer in ("conv1", "conv2"):
        diffs = [
            (a - b) ** 2
            for i in range(2)
            for a, b in zip(q(f_s[layer], i), q(f_t[layer], i), strict=True)
        ]
        want += sum(diffs) / len(diffs)
    assert math.isclose(got, 1000 / 2 * want, rel_tol=1e-5)


def test_attention_transfer_pairs_the_deepest_stages_and_pools_the_larger_map():
    loss, _, _ = _bound("at", student="cnn_small", teacher="resnet20")
    assert loss.teacher_layers == ("layer2", "layer3") and loss.sizes == [16, 8]


def test_fitnet_regresses_the_hint_through_a_trained_projection():
    loss, student, teacher = _bound("fitnet", student="cnn_small", teacher="resnet20")
    assert (loss.student_layers, loss.teacher_layers, loss.size) == (("conv2",), ("layer2",), 8)
    hint = torch.randn(2, 32, 16, 16).relu()
    (target,) = loss.teacher_targets({"layer2": hint}).values()
    assert target.shape == (2, 32, 8, 8)  # the teacher's 16x16 map pooled to the student's 8x8
    f_s = torch.randn(2, 64, 8, 8, requires_grad=True)
    batch = {"labels": torch.tensor([0, -1]), "teacher_feat:layer2": target}
    terms = loss(torch.zeros(2, 4), batch, {"conv2": f_s})
    want = 100 * ((loss.regressor(f_s) - target) ** 2).mean()
    assert math.isclose(terms["hint"].item(), want.item(), rel_tol=1e-5)
    terms["hint"].backward()
    assert f_s.grad is not None and loss.regressor[0].weight.grad.abs().sum() > 0


def test_rkd_matches_distance_and_angle_relations_by_hand():
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 3, generator=gen), torch.randn(4, 5, generator=gen)
    loss, _, _ = _bound("rkd", distance_weight=25.0, angle_weight=50.0)
    batch = {"labels": torch.zeros(4, dtype=torch.long), "teacher_feat:hidden": t}
    terms = loss(torch.zeros(4, 4), batch, {"hidden": s})

    def dist_matrix(e: list[list[float]]) -> list[list[float]]:
        d = [[math.dist(a, b) for b in e] for a in e]
        mu = sum(d[i][j] for i in range(4) for j in range(4) if i != j) / 12
        return [[v / mu for v in row] for row in d]

    def unit(v: list[float]) -> list[float]:
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v] if n else v

    def angle_tensor(e: list[list[float]]) -> list[float]:
        out = []
        for j in range(4):
            for i in range(4):
                for k in range(4):
                    a = unit([x - y for x, y in zip(e[i], e[j], strict=True)])
                    b = unit([x - y for x, y in zip(e[k], e[j], strict=True)])
                    out.append(sum(x * y for x, y in zip(a, b, strict=True)))
        return out

    ds, dt = dist_matrix(s.tolist()), dist_matrix(t.tolist())
    want_d = sum(_huber(ds[i][j], dt[i][j]) for i in range(4) for j in range(4)) / 16
    a_s, a_t = angle_tensor(s.tolist()), angle_tensor(t.tolist())
    want_a = sum(_huber(a, b) for a, b in zip(a_s, a_t, strict=True)) / len(a_s)
    assert math.isclose(terms["rkd_distance"].item(), 25 * want_d, rel_tol=1e-4)
    assert math.isclose(terms["rkd_angle"].item(), 50 * want_a, rel_tol=1e-4)


def test_rkd_ignores_scale_and_rotation_of_the_embedding():
    gen = torch.Generator().manual_seed(2)
    t = torch.randn(6, 8, generator=gen)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen))
    loss, _, _ = _bound("rkd", student="cnn_large", teacher="cnn_large")
    batch = {"labels": torch.zeros(6, dtype=torch.long), "teacher_feat:hidden": t}
    terms = loss(torch.zeros(6, 4), batch, {"hidden": 3.0 * t @ rotation})
    assert terms["rkd_distance"].item() < 1e-6 and terms["rkd_angle"].item() < 1e-6


@pytest.mark.parametrize(
    "name,override,needle",
    [
        ("dkd", {"beta": -1.0}, "loss.beta=-1.0"),
        ("dkd", {"warmup": 2.0}, "loss.warmup=2.0"),
        ("dist", {"temperature": 0.0}, "loss.temperature=0.0"),
        ("at", {"p": 0.0}, "loss.p=0.0"),
        ("rkd", {"angle_weight": -5.0}, "loss.angle_weight=-5.0"),
        ("fitnet", {"feature_weight": -1.0}, "loss.feature_weight=-1.0"),
        ("kd", {"alpha": 1.5}, "loss.alpha=1.5"),
    ],
)
def test_out_of_range_parameters_name_the_key(name, override, needle):
    from kdrun.losses import loss_params

    cfg = loss_params(OmegaConf.create({"name": name, **override}))
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        LOSSES[name].check(cfg)


def test_unknown_layer_names_and_models_without_declared_layers_are_config_errors():
    with pytest.raises(ConfigError, match="loss.student_layer='conv9'"):
        _bound("fitnet", student_layer="conv9")
    with pytest.raises(ConfigError, match="declares no 'hint' layer"):
        _bound("fitnet", student="torchvision:resnet18")
    loss, _, _ = _bound("fitnet", student="torchvision:resnet18", student_layer="layer2")
    assert loss.student_layers == ("layer2",)


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
    from kdrun.losses.base import label_cross_entropy

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
