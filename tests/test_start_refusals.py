"""A start refused at the output directory (issue 22, classes 6 and 9): one paragraph, exit 2,
and no empty run directory left behind."""

from __future__ import annotations

import errno
import tempfile

import pytest

from kdrun.errors import StorageError
from kdrun.store.output_dir import check_output_dir
from kdrun.store.storage import make_dirs


def test_a_run_dir_name_longer_than_the_file_system_allows_is_one_paragraph(tmp_path):
    with pytest.raises(StorageError, match="longer than the file system allows") as info:
        make_dirs(tmp_path / ("x" * 300), "hydra.run.dir")
    assert "point hydra.run.dir at a shorter path" in str(info.value)


def test_a_start_refused_at_the_disk_space_probe_leaves_no_run_dir(tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    run_dir = tmp_path / "outputs" / "day" / "run"
    with pytest.raises(SystemExit) as info:
        check_output_dir(str(run_dir), "hydra.run.dir")
    assert info.value.code == 2 and "no space left" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()
