"""cli._common.write_new_file: outputs never overwrite, never write through links, never half-written."""

from __future__ import annotations

import os

import pytest

from sdguard.cli._common import write_new_file


def test_a_taken_name_gets_a_numbered_one_and_links_are_not_followed(tmp_path):
    (tmp_path / "out.png").write_bytes(b"mine")
    (tmp_path / "victim.txt").write_bytes(b"notes")
    (tmp_path / "out-1.png").symlink_to(tmp_path / "victim.txt")
    (tmp_path / "out-2.png").symlink_to(tmp_path / "nowhere")         # dangling: still taken
    written = write_new_file(tmp_path / "out.png", lambda f: f.write(b"new"))
    assert written == tmp_path / "out-3.png" and written.read_bytes() == b"new"
    assert (tmp_path / "out.png").read_bytes() == b"mine" and (tmp_path / "victim.txt").read_bytes() == b"notes"
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    def broken(f):
        f.write(b"half")
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        write_new_file(tmp_path / "sub" / "out.png", broken)
    assert list((tmp_path / "sub").iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_the_file_gets_the_umask_mode_not_the_temporary_files(tmp_path):
    old = os.umask(0o022)
    try:
        written = write_new_file(tmp_path / "out.png", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert written.stat().st_mode & 0o777 == 0o644
