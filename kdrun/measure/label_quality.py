"""How well the teacher's soft labels describe the images it labelled, on the labelled shots.

Two teachers of similar accuracy can teach very differently from the same views: what the
student learns from a cutmix of a cat and a ship is the teacher's answer on it. For every
labelled image (the shots; pool and made images have no label) and view, the teacher is scored
against what the view contains: the class of its larger part (`agrees`), and the probability
it puts on the one or two classes mixed into it (`mass_on_content`). `entropy` and
`confidence` (mean top probability) say how soft the labels are, at temperature 1.
"""

from __future__ import annotations

import math

import torch


def label_quality(
    logits: torch.Tensor,
    labels: torch.Tensor,
    partner: torch.Tensor | None = None,
    lam: torch.Tensor | None = None,
) -> dict[str, float] | None:
    """Scores of the teacher's logits on the labelled images: (M, C) clean, or (M, V, C) views
    whose image i, view v mixes in image `partner[i, v]` with weight `1 - lam[i, v]`.

    None when no image is labelled. A view mixed with an unlabelled partner is skipped.
    """
    known = labels >= 0
    if not bool(known.any()):
        return None
    logits = logits[known].float()  # only the shots: a pool's views are never converted
    own = labels[known]
    if partner is None or lam is None:
        probs = logits.softmax(-1)
        dominant, content = own, probs.gather(-1, own[:, None]).squeeze(-1)
    else:
        own = own[:, None].expand(-1, logits.shape[1])
        partner = labels[partner[known].long()]
        keep = partner >= 0
        if not bool(keep.any()):
            return None
        probs = logits[keep].softmax(-1)
        own, partner, lam = own[keep], partner[keep], lam[known].float()[keep]
        dominant = torch.where(lam >= 0.5, own, partner)
        p_own = probs.gather(-1, own[:, None]).squeeze(-1)
        p_partner = probs.gather(-1, partner[:, None]).squeeze(-1)
        content = torch.where(own == partner, p_own, p_own + p_partner)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    return {
        "labelled": int(len(probs)),
        "agrees": float((probs.argmax(-1) == dominant).float().mean()),
        "mass_on_content": float(content.mean()),
        "confidence": float(probs.max(-1).values.mean()),
        "entropy": float(entropy.mean()),
        "max_entropy": math.log(probs.shape[-1]),
    }
