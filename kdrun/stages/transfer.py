"""Transfer stage: what the student distils on beyond its shots (kdrun/transfer/), made or
reloaded from the cache, timed, and drawn as transfer.png in the run directory."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from kdrun.episode_inputs import EpisodeInputs
from kdrun.stages.teacher import TeacherResult
from kdrun.transfer import TransferSet, build_transfer
from kdrun.transfer.picture import save_transfer_png

log = logging.getLogger(__name__)


def prepare_transfer(
    cfg: DictConfig,
    teacher: TeacherResult,
    inputs: EpisodeInputs,
    student_arch: str,
    picture: Path | None = None,
) -> TransferSet:
    """Make (or reload) this episode's transfer set; `cfg` is `transfer`. `picture`: where to
    draw the images it made."""
    source = build_transfer(cfg)
    made = source.make(teacher.model, teacher.identity, inputs, student_arch=student_arch)
    if made.online:
        made.training_set = source.training_set(teacher.model, inputs)
        if picture is not None:
            images, targets = source.sample(made.training_set, inputs)
            save_transfer_png(picture, images, targets, inputs.episode.ways)
    if made.images is not None:
        log.info(
            "transfer=%s: %d images %s",
            made.method,
            len(made),
            "from the cache" if made.hit else f"synthesised in {made.seconds:.1f}s",
        )
        if picture is not None:
            save_transfer_png(picture, made.images, made.targets, inputs.episode.ways)
    return made
