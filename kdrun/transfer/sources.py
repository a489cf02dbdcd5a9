"""The two real-image sources: the pool (real unlabelled images) and the shots alone."""

from __future__ import annotations

from kdrun.transfer.base import Transfer
from kdrun.transfer.registry import register_transfer


@register_transfer("pool")
class Pool(Transfer):
    """`pool` real unlabelled images per class join the shots (kdrun/data/fewshot.py draws them)."""

    uses_pool = True


@register_transfer("shots")
class Shots(Transfer):
    """Nothing beyond the shots: the older spelling is pool=0."""
