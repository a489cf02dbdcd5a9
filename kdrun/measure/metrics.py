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


def mean_ci(values: list[float]) -> dict:
    """Mean, sample std and 95% CI half-width (1.96·std/√n) over episodes; CI is 0 for n = 1."""
    n = len(values)
    mean = sum(values) / n
    std = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5 if n > 1 else 0.0
    return {"mean": mean, "std": std, "ci95": 1.96 * std / n**0.5, "n": n}


def aggregate_reports(reports: list[dict]) -> dict:
    """Episode reports → means (with std and CI of accuracy) and mean recall per class seen."""
    acc = mean_ci([r["test_acc"] for r in reports])
    recalls: dict[str, list[float]] = {}
    for r in reports:
        for name, value in r["per_class_recall"].items():
            recalls.setdefault(name, []).append(value)
    out = {
        "test_acc": acc["mean"],
        "test_acc_std": acc["std"],
        "test_acc_ci95": acc["ci95"],
        "macro_f1": sum(r["macro_f1"] for r in reports) / len(reports),
        "per_class_recall": {k: sum(v) / len(v) for k, v in recalls.items()},
        "test_images": reports[0]["test_images"],
    }
    if all("val_acc" in r for r in reports):  # data.val_per_class > 0: what a search selects on
        val = mean_ci([r["val_acc"] for r in reports])
        out |= {
            "val_acc": val["mean"],
            "val_acc_std": val["std"],
            "val_acc_ci95": val["ci95"],
            "val_images": reports[0]["val_images"],
        }
    return out
