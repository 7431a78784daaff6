"""Atomic writes: nothing half-written under the final name, and ordinary permissions."""

from __future__ import annotations

import os

import pytest

from magicpose_cli.files import atomic_directory, atomic_path, atomic_write_text


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_directory_is_replaced_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_text("stale")
    with atomic_directory(target) as folder:
        (folder / "fresh.bin").write_text("fresh")
    assert sorted(p.name for p in target.iterdir()) == ["fresh.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_writes_leave_ordinary_permissions(tmp_path):
    atomic_write_text(tmp_path / "note.txt", "hello")
    with atomic_directory(tmp_path / "folder") as folder:
        (folder / "inside.txt").write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "note.txt").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
