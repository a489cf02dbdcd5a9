"""Loading a user's teacher checkpoint: tensors only, never pickled code, with a message that
says what is wrong with the file (and never suggests loading it unsafely)."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from kdrun.errors import ConfigError
from kdrun.measure.finite import nonfinite_count
from kdrun.models import build_model
from kdrun.store.cache import file_digest
from kdrun.store.storage import GiB, regular_file

log = logging.getLogger(__name__)


def checkpoint_path(path: str) -> Path:
    """Relative checkpoint paths resolve against the launch directory."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(path))


MAX_CHECKPOINT_BYTES = 4 * GiB  # the largest torchvision classifier saves in about 0.6 GiB
_digests: dict[tuple, str] = {}


def checked_checkpoint(path: str) -> tuple[Path, os.stat_result]:
    """The checkpoint file and its stat, refused (ConfigError naming teacher.checkpoint) unless
    it is a regular file of plausible size: /dev/zero or a FIFO must never be opened."""
    file = checkpoint_path(path)
    try:
        return file, regular_file(file, "teacher.checkpoint", MAX_CHECKPOINT_BYTES)
    except PermissionError as exc:
        raise ConfigError(f"teacher.checkpoint={path} cannot be read: {exc.strerror}.") from None


def checkpoint_digest(path: str) -> str:
    """SHA-256 of the checkpoint file, hashed once per (path, inode, size, mtime) in this
    process: the reuse proof, preflight and the teacher stage all ask for it."""
    file, st = checked_checkpoint(path)
    stamp = (str(file), st.st_ino, st.st_size, st.st_mtime_ns)
    if stamp not in _digests:
        _digests[stamp] = file_digest(file)
    return _digests[stamp]


def load_checkpoint(path: str, arch: str, num_classes: int) -> nn.Module:
    """Build `arch` and load weights from `path`; only tensors load, never pickled code.
    Common wrappings (`{"model": ...}`, a DataParallel `module.` prefix) are unwrapped, and
    NaN or Inf weights are refused: such a teacher would only teach noise."""
    file, _ = checked_checkpoint(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"teacher.checkpoint={path} {_load_failure(file, exc)}") from None
    model = build_model(arch, num_classes)
    expected = model.state_dict()
    state, unwrapped = unwrap_state(state, expected)
    problem = _state_mismatch(state, expected, num_classes)
    if problem is None:
        bad = nonfinite_weights(state)
        if bad:
            key, count, tensors = bad
            raise ConfigError(
                f"teacher.checkpoint={path} holds non-finite weights: {key!r} has {count} NaN "
                f"or Inf value(s) ({tensors} tensor(s) affected); the model it was saved from "
                "had likely diverged. Use a checkpoint from before the divergence."
            )
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, ValueError) as exc:
            problem = str(exc).strip().splitlines()[0][:200]
    if problem is not None:
        raise ConfigError(
            f"teacher.checkpoint={path} does not fit teacher.arch={arch} with ways={num_classes} "
            f"classes: {problem}."
        )
    if unwrapped:
        _log_once(file, f"teacher.checkpoint={path}: unwrapped {' and '.join(unwrapped)}")
    return model


def _load_failure(file: Path, exc: Exception) -> str:
    """Why torch.load refused `file`, as the rest of a sentence: its weights-only refusal is a
    page that ends in advice to load with weights_only=False, the unsafe thing."""
    if isinstance(exc, OSError):
        return f"cannot be read as a weights-only PyTorch checkpoint ({str(exc)[:200]})."
    blocked = _unsafe_globals(file, exc)
    if blocked:
        return (
            f"was refused: unpickling it would import and call {', '.join(blocked)}, i.e. run "
            "code, and kdrun loads tensors only (torch.load with weights_only=True), never "
            "pickled objects. Save the model's state_dict() alone and point teacher.checkpoint "
            "at that file."
        )
    reason = _torch_reason(exc)
    if zipfile.is_zipfile(file):
        return f"cannot be read as a weights-only PyTorch checkpoint ({reason})."
    if is_legacy_checkpoint(file):
        return (
            "is in torch.save's legacy format (PyTorch < 1.6), which kdrun reads, but this file "
            f"does not unpickle as tensors ({reason}); it may be truncated or damaged: re-save "
            "the model's state_dict()."
        )
    return (
        "cannot be read as a weights-only PyTorch checkpoint (it is not a file written by "
        "torch.save)."
    )


def _torch_reason(exc: Exception) -> str:
    """torch's own reason, without its advice: the weights-only unpickler's error, else the
    first line of the message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global|\n|$)", text)
    lines = text.strip().splitlines() or [type(exc).__name__]
    return (found.group(1) if found else lines[0])[:200]


def _unsafe_globals(file: Path, exc: Exception) -> list[str]:
    """The globals (classes, functions) the weights-only unpickler refused to import; for the
    legacy format, read from the file's pickle opcodes (torch names none there)."""
    if is_legacy_checkpoint(file):
        return legacy_globals(file)
    if not isinstance(exc, pickle.UnpicklingError):
        return []
    found = re.findall(r"Unsupported global: GLOBAL ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)", str(exc))
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if lister is not None and zipfile.is_zipfile(file):
        with contextlib.suppress(Exception):  # a damaged archive: keep what the message named
            found = [*found, *lister(file)]
    return list(dict.fromkeys(found))  # unique, in order


SAFE_GLOBALS = ("torch.", "collections.OrderedDict")  # what a legacy state dict names
LEGACY_PICKLES = 4  # magic number, protocol, sys info, then the object (storages follow, raw)


def legacy_globals(file: Path) -> list[str]:
    """Globals other than torch's and OrderedDict that a legacy checkpoint's pickles import,
    found by reading opcodes (pickletools), never by unpickling."""
    import pickletools

    found: list[str] = []
    try:
        with open(file, "rb") as f:
            for _ in range(LEGACY_PICKLES):
                strings: list[str] = []
                for op, arg, _ in pickletools.genops(f):
                    if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                        strings.append(str(arg))
                    elif op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a truncated or odd stream: keep what was read
        pass
    unsafe = [g for g in found if not g.startswith(SAFE_GLOBALS)]
    return list(dict.fromkeys(unsafe))


LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def is_legacy_checkpoint(file: Path) -> bool:
    """torch.save's format before PyTorch 1.6 (`_use_new_zipfile_serialization=False`): a
    pickle stream that opens with torch's magic number, not a zip archive."""
    try:
        with open(file, "rb") as f:
            head = f.read(14)
    except OSError:
        return False
    return head[:4] == b"\x80\x02\x8a\x0a" and head[4:14] == LEGACY_MAGIC


WRAPPERS = ("state_dict", "model_state_dict", "model", "net")  # training scripts' usual keys
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def unwrap_state(state: object, expected: dict) -> tuple[object, list[str]]:
    """The weights inside a training script's usual wrappings, and the wrappings removed: a
    dict holding them under one of WRAPPERS, and weight names with a PREFIXES prefix (kept
    when the names do not then match `expected`, so the mismatch is reported as saved)."""
    removed = []
    if isinstance(state, dict) and not _is_weights(state):
        key = next((k for k in WRAPPERS if isinstance(state.get(k), dict)), None)
        if key is not None:
            state, removed = state[key], [f"{{{key!r}: ...}}"]
    if not isinstance(state, dict) or set(state) == set(expected):
        return state, removed
    stripped, prefixes = state, []
    while stripped and set(stripped) != set(expected):
        prefix = next((p for p in PREFIXES if all(str(k).startswith(p) for k in stripped)), None)
        if prefix is None:
            break
        stripped = {k[len(prefix) :]: v for k, v in stripped.items()}
        prefixes.append(prefix)
    if prefixes and set(stripped) == set(expected):
        names = " and ".join(f"the {p!r} prefix" for p in prefixes)
        return stripped, [*removed, f"{names} (DataParallel/DDP or torch.compile)"]
    return state, removed


def _is_weights(state: dict) -> bool:
    return bool(state) and all(isinstance(v, torch.Tensor) for v in state.values())


def nonfinite_weights(state: dict) -> tuple[str, int, int] | None:
    """The first weight holding NaN or Inf, its count of such values, and how many weights
    hold any; None when every value is finite."""
    first, tensors = None, 0
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            count = nonfinite_count(value)
            if count:
                tensors += 1
                first = first or (key, count)
    return None if first is None else (first[0], first[1], tensors)


_logged: set[tuple[Path, float]] = set()


def _log_once(file: Path, message: str) -> None:
    """Preflight and the teacher stage both load the checkpoint: say it once per file."""
    try:
        stamp = (file, file.stat().st_mtime)
    except OSError:
        stamp = (file, 0.0)
    if stamp not in _logged:
        _logged.add(stamp)
        log.info("%s", message)


def _state_mismatch(state: object, expected: dict, num_classes: int) -> str | None:
    """Say why a loaded object is not `expected`'s state dict: another type, architecture or
    class count; torch's own message names only the first key, without the cause."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict of weights"
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        example = f"{missing[0]!r} missing" if missing else f"{unexpected[0]!r} unexpected"
        return (
            f"{len(missing)} missing and {len(unexpected)} unexpected weight names (e.g. "
            f"{example}); {_wrapping(state)}"
        )
    for key, want in expected.items():
        got = getattr(state[key], "shape", None)
        if got is None:
            return f"{key!r} is a {type(state[key]).__name__}, not a tensor"
        if tuple(got) != tuple(want.shape):
            head = len(want.shape) >= 1 and want.shape[0] == num_classes and len(got) >= 1
            if head and tuple(got[1:]) == tuple(want.shape[1:]):
                return f"its head {key!r} has {got[0]} classes; use a matching checkpoint or ways"
            return f"{key!r} has shape {tuple(got)} in the checkpoint, {tuple(want.shape)} here"
    return None


def _wrapping(state: dict) -> str:
    """What a dict whose names do not match is, as far as can be told: a wrapper of something
    other than weights, weights under a prefix kdrun does not strip, or another architecture."""
    if not _is_weights(state):
        keys = ", ".join(repr(k) for k in list(state)[:5])
        return (
            f"it is a dict of {len(state)} entries ({keys}) rather than weights; kdrun looks for "
            f"the weights under {', '.join(repr(k) for k in WRAPPERS)}: save the model's "
            "state_dict() alone"
        )
    first = str(next(iter(state))).split(".")[0] + "."
    if len(state) > 1 and all(str(k).startswith(first) for k in state):
        return (
            f"every weight name starts with {first!r}, so it was saved from a model wrapped "
            "in another module, or from another architecture"
        )
    return "it was saved from another architecture"
