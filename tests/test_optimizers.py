"""`teacher.optimizer` / `student.optimizer`: each name builds its optimiser, an unknown one is
refused before any work, and the choice reaches the training loop."""

from __future__ import annotations

import pytest
import torch

from kdrun.errors import ConfigError
from kdrun.optimizers import OPTIMIZERS, build_optimizer
from kdrun.pipeline import run
from kdrun.preflight import preflight
from tests.conftest import SMOKE_FAST


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_each_name_builds_its_optimiser(name, cls):
    opt = build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], 0.1, 0.9, 5e-4)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == 0.1 and group["weight_decay"] == 5e-4
    if name == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"]
    else:
        assert group["betas"] == (0.9, 0.999)


def test_sgd_without_momentum_is_plain_sgd():
    opt = build_optimizer("sgd", [torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0, 0.0)
    assert not opt.param_groups[0]["nesterov"]


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_an_unknown_optimiser_is_refused_naming_the_choices(compose_cfg, stage):
    with pytest.raises(ConfigError, match=rf"{stage}.optimizer='lion' is unknown; choose one of: "):
        preflight(compose_cfg(*SMOKE_FAST, f"{stage}.optimizer=lion"))
    assert set(OPTIMIZERS) == {"sgd", "adam", "adamw"}


@pytest.mark.slow
def test_the_student_optimiser_changes_the_student_not_the_teacher(compose_cfg, tmp_path):
    sgd = run(compose_cfg(*SMOKE_FAST), tmp_path / "sgd")
    adamw = run(
        compose_cfg(*SMOKE_FAST, "student.optimizer=adamw", "student.lr=0.003"), tmp_path / "adamw"
    )
    assert adamw["episodes"][0]["teacher"]["test_acc"] == sgd["episodes"][0]["teacher"]["test_acc"]
    assert adamw["student"]["test_acc"] != sgd["student"]["test_acc"]
