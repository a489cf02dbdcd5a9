"""kdrun's Slurm launcher as a Hydra plugin (Hydra instantiates launchers from the
`hydra_plugins` package only); the messages and exit statuses live in
kdrun/cli/slurm_launcher.py. Without `kdrun[slurm]` this module defines nothing, silently:
Hydra imports every plugin module on every start."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _submitit
except ImportError:  # hydra-submitit-launcher not installed: no Slurm launcher to extend
    _submitit = None  # kdrun.cli.main registers nothing then

if _submitit is not None:

    class KdrunSlurmLauncher(_submitit.SlurmLauncher):
        """submitit's Slurm launcher; no Slurm to submit to, or a job that ended without a
        result, end the command with one paragraph instead of a traceback."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            from kdrun.cli.slurm_launcher import launch_or_explain

            sweep_dir = str(self.config.hydra.sweep.dir) if self.config is not None else "?"
            return launch_or_explain(
                lambda: super(KdrunSlurmLauncher, self).launch(job_overrides, initial_job_idx),
                job_overrides,
                initial_job_idx,
                sweep_dir,
            )
