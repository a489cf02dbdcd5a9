"""What every stage of an episode reads, as one frozen value passed by keyword: the stages take
their own config group and their results as arguments, and everything shared from here."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from kdrun.data import ImageDataset
from kdrun.data.augment import Normalize
from kdrun.data.fewshot import Episode
from kdrun.runtime.device import Runtime
from kdrun.store.cache import ArtifactCache


@dataclass(frozen=True)
class RunInputs:
    """Shared by every episode of a run."""

    dataset: ImageDataset
    normalize: Normalize
    runtime: Runtime
    cache: ArtifactCache
    eval_batch_size: int
    augment: DictConfig  # data.augment: the crops and flips every stage applies

    def for_episode(self, episode: Episode) -> EpisodeInputs:
        return EpisodeInputs(**vars(self), episode=episode)


@dataclass(frozen=True)
class EpisodeInputs(RunInputs):
    """One episode's draw of classes, shots and pool, with what the run shares."""

    episode: Episode
