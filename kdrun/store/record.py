"""A run's record, `metrics.json`: the numbers plus what produced them (resolved config,
overrides, multirun stamp), the size and SHA-256 of the files it names, and a checksum of
itself, so a report row or a reused run is never built from a file that does not verify."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kdrun.store.cache import atomic_write_text, digest, file_digest
from kdrun.store.storage import MiB, regular_file, storage_error

log = logging.getLogger(__name__)

RECORD = "metrics.json"
MANIFEST = "kdrun-multirun.json"  # at a multirun's root: its id and job list (kdrun.report.sweep)
FILES = ("history.csv", "student.pt", "baseline.pt", "student.onnx")
IGNORED_OVERRIDES = ("hydra.", "data.root=", "data.download=", "cache_dir=")  # paths
STATUSES = ("ok", "diverged")  # what a run can record; a report adds missing/failed/unverified
# Keys this module owns; write_record replaces them, so a reused record can be re-stamped.
MAX_RECORD_BYTES = 64 * MiB  # a record holds numbers and curves: a few hundred KiB at most
OWN_KEYS = ("status", "overrides", "config", "config_digest", "multirun", "files", "checksum")


@dataclass(frozen=True)
class Check:
    """What `verify_record` found: `state` is ok, absent, unverified (an older kdrun's record of
    the right shape, without checksum), damaged, or special (not a regular file of plausible
    size: never opened); `problem` says why it is not ok."""

    state: str
    record: dict | None = None
    problem: str = ""


def _canonical(record: dict) -> bytes:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _checksum(record: dict) -> str:
    return "sha256:" + hashlib.sha256(_canonical(record)).hexdigest()


def job_overrides() -> list[str]:
    """This job's command-line overrides, minus those that do not change results (paths)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.startswith(IGNORED_OVERRIDES)]


def multirun_stamp() -> dict | None:
    """Which multirun (the id in the sweep dir's manifest) and job number this process runs;
    read from the shared sweep dir, so it holds under any launcher. None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    manifest = read_manifest(Path(hc.sweep.dir))
    return {"id": manifest.get("id") if manifest else None, "job": int(hc.job.num)}


def read_manifest(sweep_dir: Path) -> dict | None:
    """The manifest written when the multirun in `sweep_dir` started; None if absent or bad."""
    try:
        regular_file(sweep_dir / MANIFEST, MANIFEST, MAX_RECORD_BYTES)
        manifest = json.loads((sweep_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("id"), str) else None


def _file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": file_digest(path)}


def write_record(
    out_dir: Path,
    metrics: dict,
    cfg: DictConfig,
    overrides: list[str] | None = None,
    multirun: dict | None = None,
) -> dict:
    """Write `metrics` as out_dir/metrics.json with its provenance and checksums; returns the
    record. `status` defaults to ok; the files of FILES present in out_dir are checksummed.
    `overrides` and `multirun` default to this Hydra job's (given: a record built elsewhere)."""
    record = {k: v for k, v in metrics.items() if k not in OWN_KEYS}
    config = OmegaConf.to_container(cfg, resolve=True)
    record.update(
        status=metrics.get("status", "ok"),
        overrides=job_overrides() if overrides is None else overrides,
        config=config,
        config_digest=digest(config),
        multirun=multirun_stamp() if multirun is None else multirun,
        files={n: _file_entry(out_dir / n) for n in FILES if (out_dir / n).is_file()},
    )
    record["checksum"] = _checksum(record)
    atomic_write_text(json.dumps(record, indent=2) + "\n", out_dir / RECORD)
    return record


def restamp(out_dir: Path, record: dict, cfg: DictConfig) -> dict:
    """A verified record reused by this job: rewritten only if this job's overrides or multirun
    stamp differ, so the multirun's summary counts it as one of its jobs, or if the run dir was
    moved or copied here, so the record names the dir it is in."""
    here = str(out_dir)
    if (
        record.get("multirun") == multirun_stamp()
        and record.get("overrides") == job_overrides()
        and record.get("out_dir", here) == here
    ):
        return record
    return write_record(out_dir, {**record, "out_dir": here}, cfg)


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def shape_problem(record: object) -> str:
    """Why a parsed metrics.json cannot be a kdrun record ("" if it can): foreign or cut JSON."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    status = record.get("status", "ok")
    if status not in STATUSES:
        return f"unknown status {status!r}"
    if status != "ok":
        return "" if isinstance(record.get("error"), str) else "no 'error' for its status"
    for model in ("teacher", "baseline", "student"):
        if not isinstance(record.get(model), dict) or not _number(record[model].get("test_acc")):
            return f"no number at {model}.test_acc"
    if not _number(record.get("kd_gain")):
        return "no number at kd_gain"
    timing = record.get("timing")
    if not isinstance(timing, dict) or not _number(timing.get("total")):
        return "no number at timing.total"
    return ""


def _provenance_problem(record: dict) -> str:
    overrides, files = record.get("overrides"), record.get("files")
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return "no list of overrides"
    if not isinstance(record.get("config"), dict):
        return "no resolved config"
    if record.get("config_digest") != digest(record["config"]):
        return "config_digest does not match its config"
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        return "no table of files"
    if record.get("status") == "ok" and "student.pt" not in files:
        return "it names no student.pt"
    return ""


def _files_problem(out_dir: Path, files: dict) -> str:
    for name, entry in files.items():
        path = out_dir / name
        if os.path.basename(name) != name or name in ("", ".", ".."):
            return f"it names {name!r}, not a file in its run directory"
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != entry.get("bytes") or file_digest(path) != entry.get("sha256"):
            return f"{name} differs from its recorded size and SHA-256"
    return ""


def verify_record(out_dir: Path) -> Check:
    """Read and check out_dir/metrics.json: JSON, shape, its checksum, then the files it names."""
    path = out_dir / RECORD
    if not os.path.lexists(path):
        return Check("absent", problem="no metrics.json")
    try:
        regular_file(path, RECORD, MAX_RECORD_BYTES)  # a FIFO would block, /dev/zero fill memory
    except ValueError as exc:
        return Check("special", problem=str(exc))
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return Check("absent", problem="no metrics.json")
    except (OSError, ValueError) as exc:
        return Check("damaged", problem=f"not readable JSON ({exc})")
    problem = shape_problem(record)
    if problem:
        return Check("damaged", problem=problem)
    if "checksum" not in record:
        return Check("unverified", record, "no checksum (written by an older kdrun)")
    if record["checksum"] != _checksum(record):
        return Check("damaged", problem="its checksum does not match (the file was edited)")
    problem = _provenance_problem(record) or _files_problem(out_dir, record["files"])
    return Check("damaged", problem=problem) if problem else Check("ok", record)


def set_aside(out_dir: Path, why: str) -> None:
    """Move a metrics.json that must not be trusted to metrics.json.stale, with one WARNING."""
    path = out_dir / RECORD
    try:
        os.replace(path, path.with_name(RECORD + ".stale"))
    except OSError as exc:
        raise storage_error(path.with_name(RECORD + ".stale"), exc, "hydra.run.dir") from exc
    log.warning("%s: %s; moved to %s.stale, running the job again", path, why, RECORD)
