import errno
import json
import logging
import os

import pytest
import torch

from kdrun.errors import StorageError
from kdrun.store import cache as cache_mod
from kdrun.store import storage
from kdrun.store.cache import ArtifactCache, digest, record_path, tensor_digest


def test_digest_is_stable_and_order_independent():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})
    assert tensor_digest(torch.arange(5)) != tensor_digest(torch.arange(5).flip(0))


def test_save_then_load_round_trips_and_records(tmp_path):
    c = ArtifactCache(tmp_path)
    key = digest({"x": 1})
    assert c.load("kind", key) is None
    c.save("kind", key, {"t": torch.ones(3), "note": "hi"})
    entry = c.load("kind", key)
    assert torch.equal(entry["t"], torch.ones(3)) and entry["note"] == "hi"
    c.record("kind", True)
    assert c.summary()["kind"] == {"hit": 1, "miss": 0} and c.summary()["hits"] == 1


def test_a_crash_while_writing_leaves_no_entry(tmp_path, monkeypatch):
    c = ArtifactCache(tmp_path)
    key = digest({"x": 2})

    def half_write(obj, f):
        f.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # as if the process were interrupted mid-write

    monkeypatch.setattr(cache_mod.torch, "save", half_write)
    with pytest.raises(KeyboardInterrupt):
        c.save("kind", key, {"t": torch.ones(3)})
    assert not c.path("kind", key).exists()
    assert os.listdir(tmp_path / "kind") == []  # no temp file left behind either


def test_a_corrupt_entry_is_moved_aside_and_rebuilt(tmp_path):
    c = ArtifactCache(tmp_path)
    key = digest({"x": 3})
    path = c.path("kind", key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"truncated garbage")
    assert c.load("kind", key) is None
    assert not path.exists() and path.with_name(path.name + ".corrupt").exists()
    c.save("kind", key, {"t": torch.zeros(1)})
    assert c.load("kind", key) is not None


def test_an_entry_stored_under_another_key_is_not_trusted(tmp_path):
    c = ArtifactCache(tmp_path)
    a, b = digest({"k": "a"}), digest({"k": "b"})
    c.save("kind", a, {"t": torch.ones(1)})
    src, dst = c.path("kind", a), c.path("kind", b)
    dst.write_bytes(src.read_bytes())
    record_path(dst).write_bytes(record_path(src).read_bytes())  # its checksum is valid too
    assert c.load("kind", b) is None


def test_pickled_code_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    c = ArtifactCache(tmp_path)
    key = digest({"evil": 1})
    path = c.path("kind", key)
    path.parent.mkdir(parents=True)
    torch.save({"_key": key, "x": Boom()}, path)
    record_path(path).write_text(json.dumps(cache_mod.checksum_record(path)))  # passes verify
    assert c.load("kind", key) is None
    assert not (tmp_path / "pwned").exists()


def _entry(c: ArtifactCache, name: str):
    key = digest({"name": name})
    c.save("kind", key, {"t": torch.arange(1000.0)})
    return key, c.path("kind", key)


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_record"])
def test_damaged_entries_are_reported_in_one_line_moved_aside_and_rebuilt(tmp_path, caplog, damage):
    c = ArtifactCache(tmp_path)
    key, path = _entry(c, damage)
    data = path.read_bytes()
    if damage == "truncate":  # as if the disk filled up or a copy was cut short
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # same size, one byte changed
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    else:  # a format-1 entry, or a payload copied in by hand
        record_path(path).unlink()
    reason = {"truncate": "truncated", "flip": "SHA-256", "no_record": "no checksum record"}
    with caplog.at_level(logging.WARNING, logger="kdrun.store.cache"):
        entry, hit = c.get_or_build("kind", key, lambda: {"t": torch.zeros(2)})
    assert not hit and torch.equal(entry["t"], torch.zeros(2))  # rebuilt, not the damaged one
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(path) in warning and reason[damage] in warning and "\n" not in warning
    assert path.with_name(path.name + ".corrupt").exists()
    assert torch.equal(c.load("kind", key)["t"], torch.zeros(2))  # the rebuilt entry verifies


def test_a_builder_removes_temporaries_a_killed_writer_left(tmp_path):
    c = ArtifactCache(tmp_path)
    key = digest({"x": "stale"})
    path = c.path("kind", key)
    path.parent.mkdir(parents=True)
    stale = [path.with_name(f".{path.name}.abc123.tmp"), path.with_name(f".{path.name}.sum.x.tmp")]
    other = path.with_name(".someone-else.pt.zzz.tmp")  # another entry's writer: left alone
    for p in [*stale, other]:
        p.write_bytes(b"half")
    c.get_or_build("kind", key, lambda: {"t": torch.ones(1)})
    assert not any(p.exists() for p in stale) and other.exists()
    left = {p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")}
    assert left == {path.name, record_path(path).name, other.name}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG, errno.EACCES])
def test_a_full_disk_gives_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, code):
    c = ArtifactCache(tmp_path)
    key = digest({"x": "full"})
    real_fsync = os.fsync

    def full(fd):  # the data did not fit: the write is reported at flush/fsync time
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(storage.os, "fsync", full)
    with pytest.raises(StorageError) as info:
        c.save("kind", key, {"t": torch.ones(1000)})
    monkeypatch.setattr(storage.os, "fsync", real_fsync)
    message = str(info.value)
    assert str(c.path("kind", key)) in message and "\n" not in message
    assert errno.errorcode[code] in message
    assert os.listdir(tmp_path / "kind") == []  # no payload, no record, no temporary
    assert c.load("kind", key) is None


BUILDER = """
import os, sys, time
from pathlib import Path
import torch
from kdrun.store.cache import ArtifactCache

root, go, log = map(Path, sys.argv[1:4])
while not go.exists():
    time.sleep(0.01)

def build():
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.5)  # widen the window in which the others arrive while it builds
    return {"value": torch.arange(3)}

entry, hit = ArtifactCache(root).get_or_build("teacher", "k" * 64, build)
print(entry["value"].tolist(), hit)
"""


@pytest.mark.slow
def test_concurrent_builders_of_one_entry_build_it_once(tmp_path):
    """The file lock serialises builders across processes (sweep jobs, cluster nodes): one
    builds, the others wait and load its entry."""
    import subprocess
    import sys

    go, log = tmp_path / "go", tmp_path / "builds.log"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILDER, str(tmp_path / "cache"), str(go), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    go.touch()
    outputs = [p.communicate(timeout=3600)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(log.read_text().splitlines()) == 1
    assert sorted(o[-1] for o in outputs) == ["False", "True", "True"]
    assert {" ".join(o[:-1]) for o in outputs} == {"[0, 1, 2]"}


def test_a_killed_holder_does_not_block_the_next_builder(tmp_path):
    """flock dies with its process: a job killed while building never blocks the rest."""
    import signal
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom kdrun.store.cache import ArtifactCache\n"
            f"c = ArtifactCache({str(tmp_path)!r})\n"
            "with c.lock('teacher', 'k' * 64):\n"
            "    print('held', flush=True)\n    time.sleep(3600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    entry, hit = ArtifactCache(tmp_path).get_or_build(
        "teacher", "k" * 64, lambda: {"value": torch.ones(1)}
    )
    assert not hit and entry["value"].tolist() == [1.0]
