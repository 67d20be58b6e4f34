"""Outputs are written atomically, with the permissions any new file gets under the umask."""

import os

import pytest

from mlproject.fileio import atomic_path, write_text


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_an_output_gets_the_mode_of_a_new_file_not_a_private_one(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_the_earlier_output_and_no_temporary_file(tmp_path):
    write_text(tmp_path / "out.txt", "earlier")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert (tmp_path / "out.txt").read_text() == "earlier" and os.listdir(tmp_path) == ["out.txt"]
