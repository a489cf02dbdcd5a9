import os

import pytest
import torch

from kdrun import cache as cache_mod
from kdrun.cache import ArtifactCache, digest, tensor_digest


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
    c.path("kind", b).write_bytes(c.path("kind", a).read_bytes())
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
    assert c.load("kind", key) is None
    assert not (tmp_path / "pwned").exists()
