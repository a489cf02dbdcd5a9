"""`kdrun`: compose the config with Hydra, check it, run the experiment, print the summary."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from kdrun.config import ConfigError, register_configs

log = logging.getLogger("kdrun")

register_configs()


@hydra.main(version_base="1.3", config_path="pkg://kdrun.conf", config_name="config")
def _main(cfg: DictConfig) -> float:
    from kdrun.pipeline import run
    from kdrun.report import print_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = run(cfg, out_dir)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    print_summary(metrics)
    return metrics["student"]["test_acc"]  # the objective for Hydra sweepers


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
