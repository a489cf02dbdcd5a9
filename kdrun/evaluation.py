"""Scoring on the test split: the teacher's report (cached beside it), each model's report and
the learning curve's points. Reporting only: nothing in training reads these numbers."""

from __future__ import annotations

import torch
from torch import nn

from kdrun.cache import digest
from kdrun.episode_inputs import EpisodeInputs
from kdrun.metrics import classification_report
from kdrun.teacher import TeacherResult
from kdrun.train import predict


def evaluate_teacher(teacher: TeacherResult, inputs: EpisodeInputs, tta_flip: bool) -> dict:
    """The teacher's test scores, cached beside it so a repeated run recomputes nothing."""
    dataset, episode = inputs.dataset, inputs.episode
    key = digest(
        {
            "kind": "teacher_eval",
            "teacher": teacher.identity,
            "data": dataset.identity,
            "classes": episode.classes,
            "tta_flip": tta_flip,
        }
    )
    entry, _ = inputs.cache.get_or_build(
        "teacher_eval", key, lambda: {"report": test_report(teacher.model, inputs, tta_flip)}
    )
    return dict(entry["report"])


def test_logits(model: nn.Module, inputs: EpisodeInputs, tta_flip: bool = False) -> torch.Tensor:
    """Logits on the episode's test images (the mean with their mirror images under TTA)."""
    images = inputs.dataset.test.images[inputs.episode.test_indices]
    args = (inputs.normalize, inputs.runtime, inputs.eval_batch_size)
    logits = predict(model, images, *args)
    if tta_flip:
        logits = (logits + predict(model, images.flip(3), *args)) / 2
    return logits


def test_accuracy(model: nn.Module, inputs: EpisodeInputs) -> float:
    """One point of a learning curve: reporting only, nothing is selected on it."""
    return float(
        (test_logits(model, inputs).argmax(1) == inputs.episode.test_labels).float().mean()
    )


def test_report(model: nn.Module, inputs: EpisodeInputs, tta_flip: bool = False) -> dict:
    """Accuracy, macro-F1 and per-class recall on the episode's test split."""
    names = [inputs.dataset.classes[c] for c in inputs.episode.classes]
    return classification_report(
        test_logits(model, inputs, tta_flip), inputs.episode.test_labels, names
    )
