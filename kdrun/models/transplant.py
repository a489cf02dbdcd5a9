"""student.init=teacher: start the student from the teacher's weights where the shapes allow.

Every tensor (weights and BN statistics) whose name and shape match is copied. Within the CIFAR
ResNet family that is a truncated copy: a shallower student gets the teacher's stem, the first
blocks of each stage and the head; a student of another width or family gets what matches,
possibly nothing, and the record says how much.
"""

from __future__ import annotations

import torch
from torch import nn


def init_from(student: nn.Module, teacher_state: dict[str, torch.Tensor]) -> dict:
    """Copy matching tensors of `teacher_state` into `student`; what was copied, for the record."""
    own = student.state_dict()
    copied = {
        k: v.detach().to(own[k].device, own[k].dtype)
        for k, v in teacher_state.items()
        if k in own and own[k].shape == v.shape
    }
    student.load_state_dict({**own, **copied})
    params = dict(student.named_parameters())
    copied_params = sum(params[k].numel() for k in copied if k in params)
    total = sum(p.numel() for p in params.values())
    return {
        "from": "teacher",
        "tensors_copied": len(copied),
        "tensors_total": len(own),
        "params_copied": copied_params,
        "params_total": total,
        "fraction_copied": copied_params / total if total else 0.0,
    }
