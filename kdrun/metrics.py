"""Test-split scores: accuracy, macro-F1 and per-class recall, from logits and labels."""

from __future__ import annotations

import torch


def confusion(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are true classes, columns predicted classes."""
    flat = labels * num_classes + preds
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def classification_report(
    logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> dict:
    """Accuracies as fractions; classes never predicted nor present count as F1 = 0."""
    k = len(class_names)
    cm = confusion(logits.argmax(1), labels, k).double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    recall = tp / support.clamp_min(1)
    precision = tp / predicted.clamp_min(1)
    f1 = torch.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros(k)
    )
    return {
        "test_acc": float(tp.sum() / cm.sum()),
        "macro_f1": float(f1.mean()),
        "per_class_recall": {name: float(r) for name, r in zip(class_names, recall, strict=True)},
        "test_images": int(cm.sum()),
    }
