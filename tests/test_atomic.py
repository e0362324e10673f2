"""Atomic writes: a reader sees the old file or directory, or the complete new one."""

from __future__ import annotations

import pytest

from bptdask.atomic import publish, replacing, staging_path


def hidden(directory):
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


def test_a_file_replaces_the_old_one_only_when_complete(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def write_half_and_fail():
        with replacing(target) as staged:
            staged.write_text("half")
            assert target.read_text() == "old"
            raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError, match="killed half-way"):
        write_half_and_fail()
    assert target.read_text() == "old" and hidden(tmp_path) == []
    with replacing(target) as staged:
        staged.write_text("new")
    assert target.read_text() == "new" and hidden(tmp_path) == []


def test_a_directory_takes_the_place_of_the_old_one(tmp_path):
    target = tmp_path / "store"
    with replacing(target) as staged:
        staged.mkdir()
        (staged / "a").write_text("1")
    with replacing(target) as staged:
        staged.mkdir()
        (staged / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and hidden(tmp_path) == []


def test_without_overwrite_an_occupied_target_is_left_alone(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "keep").write_text("mine")
    staged = staging_path(target)
    staged.mkdir()
    with pytest.raises(FileExistsError):
        publish(staged, target, overwrite=False)
    assert (target / "keep").read_text() == "mine" and staged.is_dir()
    (target / "keep").unlink()
    publish(staged, target, overwrite=False)  # an empty directory counts as free
    assert not staged.exists()
