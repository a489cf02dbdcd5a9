"""student.init=teacher: a truncated copy of the teacher, recorded; the new ResNet levers build."""

from __future__ import annotations

import pytest
import torch

from kdrun.measure.cost import count_params
from kdrun.models import build_model
from kdrun.models.transplant import init_from
from kdrun.pipeline import run
from tests.conftest import SMOKE_FAST


def test_a_shallower_resnet_gets_the_teachers_stem_first_blocks_and_head():
    torch.manual_seed(0)
    teacher, student = build_model("resnet20", 10), build_model("resnet8", 10)
    info = init_from(student, teacher.state_dict())
    got, src = student.state_dict(), teacher.state_dict()
    for name in ("stem.0.weight", "layer1.0.conv1.weight", "layer3.0.shortcut.0.weight", "fc.bias"):
        assert torch.equal(got[name], src[name]), name
    assert torch.equal(got["layer2.0.bn1.running_var"], src["layer2.0.bn1.running_var"])
    assert info["tensors_copied"] == info["tensors_total"]  # resnet8 is a prefix of resnet20
    assert info["params_copied"] == count_params(student)


def test_another_width_copies_only_what_fits():
    student = build_model("resnet20_half", 10)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher = build_model("resnet20", 10).state_dict()
    info = init_from(student, teacher)
    assert info["params_copied"] == 10  # only the head's bias: no conv shape in common
    after = student.state_dict()
    assert torch.equal(after["fc.bias"], teacher["fc.bias"])
    assert torch.equal(after["stem.0.weight"], before["stem.0.weight"])


def test_the_width_levers_scale_the_cost():
    base, half, double = (
        count_params(build_model(a, 10)) for a in ("resnet20", "resnet20_half", "resnet20x2")
    )
    assert 3.5 < base / half < 4.5 and 3.5 < double / base < 4.5


@pytest.mark.slow
def test_a_run_records_the_students_initialisation(compose_cfg, tmp_path):
    overrides = [*SMOKE_FAST, "teacher.arch=resnet14", "student.arch=resnet8"]
    m = run(compose_cfg(*overrides, "student.init=teacher"), tmp_path / "a")
    init = m["student"]["init"]
    assert init["from"] == "teacher" and 0 < init["params_copied"] <= init["params_total"]
    assert m["episodes"][0]["student_init"] == init
    plain = run(compose_cfg(*overrides), tmp_path / "b")
    assert plain["student"]["init"] == {"from": "scratch"}
    assert plain["cache"]["baseline"] == {"hit": 1, "miss": 0}  # the baseline ignores init
