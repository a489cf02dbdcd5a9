"""Experiment trackers (logger=tensorboard|mlflow); importing this registers them. Their
libraries are optional extras, imported only when a run asks for one."""

from kdrun.loggers import mlflow, tensorboard  # noqa: F401  (registration)
from kdrun.loggers.registry import LOGGERS, check_logger, logger_names
from kdrun.loggers.tracker import Tracker, log_sweep_summary, tracking

__all__ = ["LOGGERS", "Tracker", "check_logger", "log_sweep_summary", "logger_names", "tracking"]
