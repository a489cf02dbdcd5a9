import pytest
import torch

from kdrun.losses.features import probe_features
from kdrun.models import MODELS, build_model, is_known_model, model_names, register_model


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("arch", sorted(MODELS))
def test_registered_model_gives_logits(arch: str, num_classes: int) -> None:
    model = build_model(arch, num_classes).eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(
    ("arch", "num_classes", "expected"),
    [
        ("resnet20", 100, 278_324),  # RepDistiller reports 0.28M
        ("resnet8x4", 100, 1_233_540),  # 1.23M
        ("resnet32x4", 100, 7_433_860),  # 7.43M
        ("resnet20", 10, 272_474),
        ("resnet8x4", 10, 1_210_410),
        ("resnet32x4", 10, 7_410_730),
        ("cnn_large", 10, 8_475_530),
        ("cnn_small", 10, 1_070_794),
    ],
)
def test_parameter_counts(arch: str, num_classes: int, expected: int) -> None:
    assert _num_params(build_model(arch, num_classes)) == pytest.approx(expected, rel=0.01)


def test_resnet_depths_grow_parameters() -> None:
    depths = [8, 14, 20, 32, 44, 56, 110]
    counts = [_num_params(build_model(f"resnet{d}", 10)) for d in depths]
    assert counts == sorted(counts)
    assert 1.6e6 < counts[-1] < 1.8e6  # resnet110 ~ 1.7M


def test_torchvision_resnet18_head_sized_to_ways() -> None:
    model = build_model("torchvision:resnet18", 5).eval()
    assert model.fc.out_features == 5
    with torch.no_grad():
        assert model(torch.randn(4, 3, 32, 32)).shape == (4, 5)


def test_unknown_model_message_names_arch_and_choices() -> None:
    with pytest.raises(ValueError) as info:
        build_model("nope", 10)
    message = str(info.value)
    assert "'nope'" in message
    for name in MODELS:
        assert name in message
    assert "torchvision:<name>" in message


def test_unknown_torchvision_model() -> None:
    with pytest.raises(ValueError, match="'nope'.*resnet18"):
        build_model("torchvision:nope", 10)


def test_non_positive_num_classes_rejected() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet8", 0)


def test_is_known_model() -> None:
    assert is_known_model("resnet32x4")
    assert is_known_model("torchvision:resnet18")
    assert not is_known_model("nope")
    assert not is_known_model("torchvision:")
    assert not is_known_model("torchvision:fasterrcnn_resnet50_fpn")  # not a classifier


def test_model_names_sorted_with_torchvision_hint() -> None:
    names = model_names()
    assert names == sorted(names)
    assert "torchvision:<name>" in names
    assert set(MODELS) <= set(names)


def test_duplicate_registration_raises() -> None:
    before = dict(MODELS)
    with pytest.raises(ValueError, match="resnet20"):
        register_model("resnet20")(lambda num_classes: torch.nn.Linear(1, num_classes))
    assert before == MODELS


def test_torchvision_prefix_reserved() -> None:
    with pytest.raises(ValueError, match="torchvision:"):
        register_model("torchvision:mine")(lambda num_classes: torch.nn.Linear(1, num_classes))
    assert "torchvision:mine" not in MODELS


def test_cnn_rejects_non_32x32_input() -> None:
    model = build_model("cnn_small", 10)
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(2, 3, 28, 28))


@pytest.mark.parametrize("arch", ["resnet20", "resnet8x4", "cnn_large"])
def test_the_auto_feature_layers_exist_and_give_features(arch: str) -> None:
    """What `student_layer=auto` names for FitNets, RKD and AT is read the way training reads it."""
    model = build_model(arch, 10)
    layers = model.feature_layers
    names = [layers["hint"], layers["embedding"], *layers["attention"]]
    features = probe_features(model, names, torch.randn(2, 3, 32, 32))
    assert set(features) == set(names)
    assert all(f.shape[0] == 2 and torch.isfinite(f).all() for f in features.values())
