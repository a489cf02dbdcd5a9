"""Where the student's distillation inputs come from beyond its shots: one file per source.

pool (real unlabelled images), shots (nothing more), mix (fresh mixes of the shots, labelled by
the teacher in the loop), inversion and generator (images synthesised from the teacher, cached).
"""

from kdrun.transfer import generator, inversion, mix, sources  # noqa: F401  (registration)
from kdrun.transfer.base import Transfer, TransferSet
from kdrun.transfer.registry import TRANSFERS, build_transfer, transfer_params

__all__ = ["TRANSFERS", "Transfer", "TransferSet", "build_transfer", "transfer_params"]
