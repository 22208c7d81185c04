"""The audit trail: hash chain, tamper evidence, crash safety, no content stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sdguard import AuditLog, Finding, load_policy
from sdguard.audit import hash_input, prompt_text_to_store
from sdguard.errors import SdguardError
from sdguard.verdict import decide


def verdict(term="nude"):
    return decide("prompt", [Finding("sexual", 1.0, "lexical", 1.0, term=term)], load_policy("public"))


def test_records_chain_and_verify(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    for i in range(5):
        log.record(verdict(), input_hash=hash_input(f"p{i}"), host="test")
    result = log.verify()
    assert result.ok and result.records == 5 and not result.partial_tail
    recs = log.tail(2)
    assert [r["seq"] for r in recs] == [4, 5]
    assert recs[1]["prev"] == recs[0]["hash"]
    assert recs[1]["verdict"]["action"] == "block"
    assert recs[1]["profile"] == "public" and recs[1]["host"] == "test"
    assert "text" not in recs[1]


def test_extra_fields_and_text_are_written_as_valid_json(tmp_path):
    import numpy as np
    from pathlib import PurePosixPath

    log = AuditLog(tmp_path / "a.jsonl")
    log.record(verdict(), input_hash=hash_input("a \ud800"), text="a \ud800",
               extra={"path": PurePosixPath("/x"), "n": np.int64(3), "f": np.float32(0.5),
                      "bad": float("inf"), "t": (1, 2), 4: "key"})
    line = (tmp_path / "a.jsonl").read_text("utf-8")
    record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert record["text"] == "a \ufffd"
    assert record["extra"] == {"path": "/x", "n": 3, "f": 0.5, "bad": None, "t": [1, 2], "4": "key"}
    assert log.verify().ok


def test_editing_a_record_is_detected(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.record(verdict(), input_hash=hash_input(str(i)))
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["verdict"]["action"] = "allow"
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    result = log.verify()
    assert not result.ok and result.records == 1 and "line 2" in result.error


def test_deleting_a_record_is_detected(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.record(verdict(), input_hash=hash_input(str(i)))
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[2] + "\n")
    result = log.verify()
    assert not result.ok and result.records == 1


def test_partial_last_line_is_reported_then_repaired(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    for i in range(3):
        log.record(verdict(), input_hash=hash_input(str(i)))
    data = path.read_bytes()
    path.write_bytes(data + data.splitlines(keepends=True)[-1][:37])  # a write cut short
    result = log.verify()
    assert result.ok and result.records == 3 and result.partial_tail
    log.record(verdict(), input_hash=hash_input("after crash"))
    result = log.verify()
    assert result.ok and result.records == 4 and not result.partial_tail



@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR binary rest",  # an image: lines that are not records
    b"notes\nmore notes without a newline",                    # a text file
    b"no newline at all",
    b"[1, 2]\n",                                              # JSON, but not a record
    b'{"seq": "5", "hash": "ab"}\n',                          # a hand edit: seq as text
], ids=["png", "text", "one-line", "json-list", "text-seq"])
def test_a_file_that_is_not_a_trail_is_refused_unchanged(tmp_path, content):
    path = tmp_path / "not-a-trail"
    path.write_bytes(content)
    with pytest.raises(SdguardError, match="not an audit trail"):
        AuditLog(path).record(verdict(), input_hash=hash_input("x"))
    assert path.read_bytes() == content


@pytest.mark.parametrize("cut", [1, 4, 37])
def test_a_first_record_cut_short_is_repaired(tmp_path, cut):
    path = tmp_path / "a.jsonl"
    AuditLog(path).record(verdict(), input_hash=hash_input("x"))
    path.write_bytes(path.read_bytes()[:cut])  # killed while writing the first record
    AuditLog(path).record(verdict(), input_hash=hash_input("y"))
    result = AuditLog(path).verify()
    assert result.ok and result.records == 1 and not result.partial_tail

WRITER = textwrap.dedent("""
    import os, signal, sys
    from sdguard import AuditLog, Finding, load_policy
    from sdguard.audit import hash_input, prompt_text_to_store
    from sdguard.verdict import decide
    v = decide("prompt", [Finding("sexual", 1.0, "lexical", 1.0, term="x" * 3000)], load_policy("public"))
    log = AuditLog(sys.argv[1])
    if sys.argv[2] == "half":
        # Killed between the two halves of one record: the worst case a crash can leave.
        log.record(v, input_hash=hash_input("whole"))
        line = (open(sys.argv[1], "rb").read().splitlines(keepends=True)[-1])
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
        os.write(fd, line[: len(line) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    print("ready", flush=True)
    i = 0
    while True:
        log.record(v, input_hash=hash_input(str(i)), extra={"pad": "y" * 200000})
        i += 1
""")


def run_writer(tmp_path, path, mode):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(path), mode], stdout=subprocess.PIPE)


def test_chain_verifies_after_process_killed_mid_record(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path).record(verdict(), input_hash=hash_input("before"))
    proc = run_writer(tmp_path, path, "half")
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    result = AuditLog(path).verify()
    assert result.ok and result.records == 2 and result.partial_tail
    AuditLog(path).record(verdict(), input_hash=hash_input("after"))
    result = AuditLog(path).verify()
    assert result.ok and result.records == 3 and not result.partial_tail


def test_chain_verifies_after_kill_9_at_random_moments(tmp_path):
    path = tmp_path / "audit.jsonl"
    for round_ in range(5):
        proc = run_writer(tmp_path, path, "loop")
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.04 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        result = AuditLog(path).verify()
        assert result.ok, result.error
        # Appending after the crash repairs any partial tail and continues the chain.
        AuditLog(path).record(verdict(), input_hash=hash_input(f"after {round_}"))
        result = AuditLog(path).verify()
        assert result.ok and not result.partial_tail
    assert AuditLog(path).verify().records > 5


def test_text_is_stored_only_when_given(tmp_path):
    log = AuditLog(tmp_path / "a.jsonl")
    rec = log.record(verdict(), input_hash=hash_input("secret"), text=None)
    assert "secret" not in json.dumps(rec)
    rec = log.record(verdict(), input_hash=hash_input("kept"), text="kept")
    assert rec["text"] == "kept"


@pytest.mark.parametrize("setting, stored", [("none", [None, None]), ("allowed", [None, "a cat"]),
                                             ("all", ["nude", "a cat"])])
def test_prompt_text_is_stored_only_as_the_policy_allows(tmp_path, setting, stored):
    path = tmp_path / "p.toml"
    path.write_text(f'extends = "public"\n[audit]\nprompt_text = "{setting}"\n')
    policy = load_policy(str(path))
    allowed = decide("prompt", [], policy)
    assert [prompt_text_to_store(policy, verdict(), "nude"), prompt_text_to_store(policy, allowed, "a cat")] == stored



def test_verify_does_not_call_a_partial_line_that_is_no_record_a_cut_write(tmp_path):
    path = tmp_path / "a.jsonl"
    log = AuditLog(path)
    log.record(verdict(), input_hash=hash_input("x"))
    path.write_bytes(path.read_bytes() + b"hello")  # appended by something else, not a record cut short
    result = log.verify()
    assert not result.ok and result.records == 1 and "not an audit record" in result.error
    with pytest.raises(SdguardError, match="not an audit trail"):  # agrees with what appending does
        log.record(verdict(), input_hash=hash_input("y"))
