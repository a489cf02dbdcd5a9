"""Scoring on the test split: the teacher's report (cached beside it), each model's report and
the learning curve's points. Reporting only: nothing in training reads these numbers."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from kdrun.episode_inputs import EpisodeInputs
from kdrun.measure.metrics import classification_report
from kdrun.runtime.progress import progress
from kdrun.stages.teacher import TeacherResult
from kdrun.store.cache import digest
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
        "teacher_eval",
        key,
        lambda: {"report": report_on_test_split(teacher.model, inputs, tta_flip, "teacher test")},
    )
    return dict(entry["report"])


def logits_on_test_split(
    model: nn.Module, inputs: EpisodeInputs, tta_flip: bool = False, label: str = ""
) -> torch.Tensor:
    """Logits on the episode's test images (the mean with their mirror images under TTA); a
    `label` shows a bar (not for the probes inside a training stage, which has its own)."""
    images = inputs.dataset.test.images[inputs.episode.test_indices]
    args = (inputs.normalize, inputs.runtime, inputs.eval_batch_size)
    total = len(images) * (2 if tta_flip else 1)
    with progress(label, total, "image") if label else nullcontext() as meter:
        logits = predict(model, images, *args, meter)
        if tta_flip:
            logits = (logits + predict(model, images.flip(3), *args, meter)) / 2
    return logits


def accuracy_on_test_split(model: nn.Module, inputs: EpisodeInputs) -> float:
    """One point of a learning curve: reporting only, nothing is selected on it."""
    return float(
        (logits_on_test_split(model, inputs).argmax(1) == inputs.episode.test_labels).float().mean()
    )


def accuracy_on_validation_split(model: nn.Module, inputs: EpisodeInputs) -> float:
    """Accuracy on the held-out labelled training images (data.val_per_class): the one number
    a search may select on. A bug to call without a validation split."""
    episode = inputs.episode
    assert len(episode.val_indices), "no validation split: data.val_per_class is 0"
    images = inputs.dataset.train.images[episode.val_indices]
    logits = predict(model, images, inputs.normalize, inputs.runtime, inputs.eval_batch_size)
    return float((logits.argmax(1) == episode.val_labels).float().mean())


def curve_point(model: nn.Module, inputs: EpisodeInputs) -> dict[str, float]:
    """One point of a learning curve: test accuracy, and validation accuracy when held out."""
    point = {"test_acc": accuracy_on_test_split(model, inputs)}
    if len(inputs.episode.val_indices):
        point["val_acc"] = accuracy_on_validation_split(model, inputs)
    return point


def report_on_test_split(
    model: nn.Module, inputs: EpisodeInputs, tta_flip: bool = False, label: str = ""
) -> dict:
    """Accuracy, macro-F1 and per-class recall on the episode's test split."""
    names = [inputs.dataset.classes[c] for c in inputs.episode.classes]
    return classification_report(
        logits_on_test_split(model, inputs, tta_flip, label), inputs.episode.test_labels, names
    )
