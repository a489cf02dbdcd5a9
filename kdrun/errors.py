"""kdrun's exceptions, in a leaf module: any module can raise them without importing another."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad setting, reported to the user as one sentence before any work starts."""


class RefusedStart(ConfigError):
    """A ConfigError met before any stage ran (preflight, reading or downloading the data): the
    run produced nothing, so it leaves nothing behind
    (kdrun.store.output_dir.discard_refused_run)."""


class StorageError(ConfigError):
    """An output or cache path that cannot be written or read; reported like a bad setting (one
    paragraph naming the path, exit status 2) because the fix is the user's: space or a path."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or weight: the run's numbers would be meaningless.

    A single run exits with status 2; in a sweep the job is recorded as diverged and the
    other jobs go on."""

    def __init__(self, stage: str, detail: str, settings: str, step: int | None = None):
        self.stage, self.step = stage, step
        where = f" at step {step}" if step is not None else ""
        super().__init__(
            f"{stage} diverged{where}: {detail}. Nothing from this stage was stored. "
            f"Lower {settings}.lr, set {settings}.grad_clip (e.g. 5), or use "
            "device.precision=fp32 if it ran in bf16."
        )


class ExportError(ConfigError):
    """export=onnx produced no file, or a file whose logits disagree with PyTorch's: reported
    in one paragraph (exit status 2) naming the operator or the difference; no file is left."""
