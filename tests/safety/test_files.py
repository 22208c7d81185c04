"""_files.write_atomic, the one writer of replaceable outputs (label / watermark embed outputs, the
model scan report): never half-written, and with the mode the user expects."""

from __future__ import annotations

import os

import pytest

from sdguard._files import write_atomic
from sdguard.model_report import write_report

RECORDS = [{"path": "m.safetensors", "action": "allow"}]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_a_new_report_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    report = tmp_path / "r.html"
    old = os.umask(0o022)
    try:
        write_report(report, RECORDS)
        assert report.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        report.chmod(0o600)
        write_report(report, RECORDS)
    finally:
        os.umask(old)
    assert report.stat().st_mode & 0o777 == 0o600 and "m.safetensors" in report.read_text()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def broken(f):
        f.write(b"half")
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError, match="encoder died"):
        write_atomic(target, broken)
    assert list(tmp_path.iterdir()) == [target] and target.read_bytes() == b"old"
