"""`sdguard scan-models`: JSON per file, folder walk, exit statuses, blocklists, HTML report."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from _model_fixtures import FakeLexicon, kohya_metadata, write_safetensors
from sdguard.cli import main
from sdguard.cli.models import PROGRESS_MIN_FILES_NO_TTY, Progress


@pytest.fixture(autouse=True)
def _fake_terms_and_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sdguard.prompt_lexical import Lexicon

    lexicon = FakeLexicon()
    monkeypatch.setattr(Lexicon, "for_policy", classmethod(lambda cls, policy: lexicon))
    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "loras" / "deep").mkdir(parents=True)
    write_safetensors(root / "loras" / "clean.safetensors", kohya_metadata({"1girl": 100, "smile": 30}))
    write_safetensors(root / "loras" / "deep" / "explicit.safetensors", kohya_metadata({"nude": 60, "1girl": 100}))
    (root / "loras" / "notes.txt").write_text("not a model")
    return root


def run(capsys, *argv: str):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_folder_is_walked_and_each_file_gets_a_json_object(capsys, models: Path) -> None:
    status, out, _ = run(capsys, "scan-models", str(models), "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 3
    assert [Path(r["path"]).name for r in records] == ["clean.safetensors", "explicit.safetensors"]
    clean, explicit = records
    assert list(clean)[:9] == ["path", "format", "sha256", "autov2", "autov3", "action", "categories", "reasons",
                               "error"]
    assert clean["action"] == "allow" and clean["error"] is None and clean["format"] == "safetensors"
    assert explicit["action"] == "block" and explicit["categories"]["sexual"] == 0.6
    assert explicit["top_tags"][0] == ["1girl", 100]


def test_adult_profile_exits_0(capsys, models: Path) -> None:
    status, out, _ = run(capsys, "scan-models", str(models), "--profile", "adult")
    assert status == 0 and out.count("ALLOW") == 2


def test_blocklist_blocks_under_adult(capsys, models: Path, tmp_path: Path) -> None:
    status, out, _ = run(capsys, "scan-models", str(models / "loras" / "clean.safetensors"), "--json")
    sha = json.loads(out)["sha256"]
    listed = tmp_path / "bl.csv"
    listed.write_text(f"hash_type,hash,category,reason,source\nsha256,{sha.upper()},minor_sexual,seen,mod\n")
    status, out, _ = run(capsys, "scan-models", str(models), "--profile", "adult", "--blocklist", str(listed), "--json")
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert status == 3 and "blocked_hash" in records["clean.safetensors"]["codes"]
    assert records["explicit.safetensors"]["action"] == "allow"


def test_malformed_and_pickle_files(capsys, tmp_path: Path) -> None:
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad")
    (tmp_path / "old.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=2))
    status, out, _ = run(capsys, "scan-models", str(tmp_path), "--json")
    records = {Path(r["path"]).name: r for r in map(json.loads, out.splitlines())}
    assert status == 3
    assert records["broken.safetensors"]["error"] and records["broken.safetensors"]["codes"][0] == "malformed_input"
    assert records["old.ckpt"]["format"] == "pickle" and records["old.ckpt"]["codes"] == ["unsafe_format"]
    assert records["old.ckpt"]["autov3"] is None


@pytest.mark.parametrize("argv, message", [
    (["scan-models", "/no/such/path"], "no such file or folder"),
    (["scan-models", ".", "--profile", "adult", "--policy", "x.toml"], "not both"),
])
def test_usage_errors_exit_2_with_nothing_on_stdout(capsys, argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and message in err


def test_bad_blocklist_exits_2(capsys, models: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bl.csv"
    bad.write_text("hash_type,hash,category\nmd5,abc,x\n")
    status, out, err = run(capsys, "scan-models", str(models), "--blocklist", str(bad))
    assert status == 2 and out == "" and "bl.csv:2" in err


def test_html_report_escapes_metadata(capsys, tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    write_safetensors(tmp_path / "x.safetensors",
                      kohya_metadata({evil: 50, "nude": 40}, **{"modelspec.title": f"nsfw {evil}"}))
    report = tmp_path / "report.html"
    status, _, _ = run(capsys, "scan-models", str(tmp_path), "--report", str(report))
    html = report.read_text()
    assert status == 3
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Top training tags" in html and "BLOCK" in html and "nude" in html


def test_audit_records_each_file(capsys, models: Path, tmp_path: Path) -> None:
    from sdguard import AuditLog

    trail = tmp_path / "audit.jsonl"
    run(capsys, "scan-models", str(models), "--audit", str(trail))
    records = list(AuditLog(trail).records())
    assert len(records) == 2 and all(r["stage"] == "model" and len(r["input_sha256"]) == 64 for r in records)
    assert AuditLog(trail).verify().ok


class _Stream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_progress_only_on_a_terminal_or_for_long_scans() -> None:
    quiet = _Stream(tty=False)
    bar = Progress(3, quiet)
    for i in range(3):
        bar.step(f"f{i}")
    bar.close()
    assert quiet.text == ""
    tty = _Stream(tty=True)
    bar = Progress(2, tty)
    bar.step("a")
    bar.step("b")
    bar.close()
    assert "2/2" in tty.text and tty.text.startswith("\r[")
    log = _Stream(tty=False)
    bar = Progress(PROGRESS_MIN_FILES_NO_TTY, log)
    for i in range(PROGRESS_MIN_FILES_NO_TTY):
        bar.step(str(i))
    assert log.text.count("\n") == 10 and f"{PROGRESS_MIN_FILES_NO_TTY}/{PROGRESS_MIN_FILES_NO_TTY}" in log.text


def test_a_fifo_is_refused_not_waited_on(capsys, tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    status, out, err = run(capsys, "scan-models", "--json", str(fifo))
    assert status == 2 and "not a regular file" in err
    assert json.loads(out)["action"] == "block" and "not a regular file" in json.loads(out)["error"]


def test_an_unreadable_file_is_blocked_and_the_rest_still_scanned(capsys, models: Path) -> None:
    import os

    loras = models / "loras"
    os.symlink("/nonexistent/model.safetensors", loras / "broken.safetensors")
    os.symlink("loop.safetensors", loras / "loop.safetensors")
    status, out, err = run(capsys, "scan-models", "--json", str(models))
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 2
    assert [Path(r["path"]).name for r in records] == ["broken.safetensors", "clean.safetensors",
                                                       "loop.safetensors", "explicit.safetensors"]
    by_name = {Path(r["path"]).name: r for r in records}
    for name in ("broken.safetensors", "loop.safetensors"):
        assert by_name[name]["action"] == "block" and "cannot be read" in by_name[name]["error"]
        assert name in err
    assert by_name["clean.safetensors"]["action"] == "allow" and by_name["clean.safetensors"]["error"] is None
    assert by_name["explicit.safetensors"]["action"] == "block"
    status, out, err = run(capsys, "scan-models", str(loras / "broken.safetensors"))
    assert status == 2 and out.startswith("BLOCK") and "broken.safetensors" in err
