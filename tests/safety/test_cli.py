"""The CLI contract that benchmarks and hosts' scripts rely on: outputs and exit statuses."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from sdguard.cli import main


@pytest.fixture
def lexical_file(tmp_path):
    path = tmp_path / "lex.toml"
    path.write_text('extends = "classroom"\n[prompt]\nsemantic = "off"\n')
    return str(path)


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_single_prompt_json(capsys, lexical_file):
    status, out, _ = run(capsys, "check-prompt", "a red fox in the snow", "--policy", lexical_file, "--json")
    data = json.loads(out)
    assert status == 0
    assert data["action"] == "allow" and data["categories"] == {} and data["reasons"] == []


def test_blocked_prompt_exits_3_with_reasons(capsys, lexical_file):
    status, out, _ = run(capsys, "check-prompt", "nude woman on a beach", "--policy", lexical_file, "--json")
    data = json.loads(out)
    assert status == 3
    assert data["action"] == "block" and data["categories"]["sexual"] == 1.0
    assert any("nude" in r for r in data["reasons"])


def test_input_jsonl_one_object_per_line_in_order(capsys, tmp_path, lexical_file):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(o) for o in [
        {"prompt": "a cat"}, {"prompt": "nude", "negative": ""}, {"prompt": "a dog", "negative": "blurry"},
    ]) + "\n")
    status, out, _ = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 3
    assert [r["action"] for r in rows] == ["allow", "block", "allow"]
    assert all({"action", "categories", "reasons"} <= set(r) for r in rows)


def test_input_plain_text_one_prompt_per_line(capsys, tmp_path, lexical_file):
    src = tmp_path / "in.txt"
    src.write_text("a cat\n\n{red|blue} bird\n")
    status, out, _ = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 0 and len(out.splitlines()) == 2


def test_input_with_another_name_is_json_lines_when_it_starts_like_json(capsys, tmp_path, lexical_file):
    src = tmp_path / "prompts.txt"
    src.write_bytes(b'{"prompt": "a cat"\n{"prompt": "\\u006e\\u0075\\u0064\\u0065"}\n')
    status, out, err = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 2 and out == "" and "prompts.txt:1: not valid JSON" in err


@pytest.mark.parametrize("start", [b'{"', b'{ "', b'  {\t "'])
def test_input_is_json_lines_when_its_first_object_has_space_after_the_brace(capsys, tmp_path, lexical_file, start):
    # Read as plain text, the escapes ("\u006e\u0075\u0064\u0065" is "nude") would go unread and pass.
    src = tmp_path / "prompts.txt"
    src.write_bytes(start + b'prompt": "\\u006e\\u0075\\u0064\\u0065"}\n')
    status, out, err = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 3 and json.loads(out)["action"] == "block", err


def test_input_starting_with_wildcard_braces_is_plain_text(capsys, tmp_path, lexical_file):
    src = tmp_path / "prompts.txt"
    src.write_text("{red|blue} bird\n{}\n")
    status, out, _ = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 0 and len(out.splitlines()) == 2


@pytest.mark.parametrize("key", ["negative", "negative_prompt"])
def test_a_null_negative_prompt_is_no_negative_prompt(capsys, tmp_path, lexical_file, key):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "a cat", key: None}) + "\n" + json.dumps({"prompt": "a dog", key: "blurry"}))
    status, out, err = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 0 and len(out.splitlines()) == 2, err


# str.splitlines would also break at these, turning one prompt into several checked alone.
LINE_BREAKS_INSIDE_A_LINE = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


@pytest.mark.parametrize("brk", LINE_BREAKS_INSIDE_A_LINE)
def test_input_is_split_at_newlines_only(capsys, tmp_path, brk):
    policy = tmp_path / "adult.toml"
    policy.write_text('extends = "adult"\n[prompt]\nsemantic = "off"\n')
    src = tmp_path / "in.txt"
    src.write_text(f"loli{brk}nude\r\na cat\n", encoding="utf-8", newline="")
    status, out, _ = run(capsys, "check-prompt", "--input", str(src), "--policy", str(policy))
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["block", "allow"]
    assert status == 3
    # A JSON line may hold them raw (json.dumps(ensure_ascii=False) writes U+2028 as is).
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": f"a cat{brk}on a mat"}, ensure_ascii=False) + "\n", encoding="utf-8")
    status, out, err = run(capsys, "check-prompt", "--input", str(src), "--policy", str(policy))
    assert status == 0 and len(out.splitlines()) == 1, err


def test_eval_sets_are_split_at_newlines_only(tmp_path):
    from sdguard.cli.evaluate import _read_set

    src = tmp_path / "set.jsonl"
    src.write_text("".join(json.dumps({"prompt": f"a{brk}b", "label": "benign"}, ensure_ascii=False) + "\r\n"
                           for brk in LINE_BREAKS_INSIDE_A_LINE), encoding="utf-8", newline="")
    assert _read_set(src) == [(f"a{brk}b", "benign") for brk in LINE_BREAKS_INSIDE_A_LINE]


@pytest.mark.parametrize("content, words", [
    (b'{"prompt": "ok"}\n{"prompt": \n', "in.jsonl:2: not valid JSON"),
    (b'{"prompt": "ok"}\n{"text": "x"}\n', "in.jsonl:2: expected an object with a string 'prompt'"),
    (b'{"prompt": "ok", "negative": 3}\n', "'negative' must be a string"),
    (b'{"prompt": "ok", "negative_prompt": []}\n', "'negative_prompt' must be a string"),
    # Reading either one alone could drop the other's minor cue ("adult").
    (b'{"prompt": "ok"}\n{"prompt": "nude", "negative": "", "negative_prompt": "adult"}\n',
     "in.jsonl:2: give 'negative' or 'negative_prompt', not both"),
    (b"caf\xe9\n", "not UTF-8"),
    # A .jsonl whose first line is not an object is still JSON Lines: read as plain text, the
    # next line's escapes ("\u006e\u0075\u0064\u0065" is "nude") would go unread and pass.
    (b'[1]\n{"prompt": "\\u006e\\u0075\\u0064\\u0065"}\n', "in.jsonl:1: expected an object"),
    (b'{"prompt": "a cat"\n', "in.jsonl:1: not valid JSON"),
    (b"", "in.jsonl: no prompts"),
    (b"\n  \n", "in.jsonl: no prompts"),
])
def test_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, lexical_file, content, words):
    src = tmp_path / "in.jsonl"
    src.write_bytes(content)
    status, out, err = run(capsys, "check-prompt", "--input", str(src), "--policy", lexical_file)
    assert status == 2 and out == "" and words in err


def test_usage_errors_exit_2(capsys, tmp_path, lexical_file):
    assert run(capsys, "check-prompt", "--policy", lexical_file)[0] == 2
    assert run(capsys, "check-prompt", "x", "--input", "f", "--policy", lexical_file)[0] == 2
    assert run(capsys, "check-prompt", "x", "--profile", "adult", "--policy", lexical_file)[0] == 2
    status, out, err = run(capsys, "check-prompt", "--input", str(tmp_path / "missing.jsonl"), "--policy", lexical_file)
    assert status == 2 and out == "" and "cannot read" in err
    with pytest.raises(SystemExit) as e:
        main(["check-prompt", "x", "--profile", "strict"])
    assert e.value.code == 2


def test_audit_flag_records_hashes_not_prompt_text(capsys, tmp_path, lexical_file):
    log = tmp_path / "audit.jsonl"
    run(capsys, "check-prompt", "nude secretword", "--policy", lexical_file, "--audit", str(log))
    run(capsys, "check-prompt", "a quiet lake", "--policy", lexical_file, "--audit", str(log))
    text = log.read_text()
    assert "secretword" not in text and "quiet lake" not in text  # [audit] prompt_text = "none"
    status, out, _ = run(capsys, "audit", "verify", "--path", str(log), "--json")
    assert status == 0 and json.loads(out)["records"] == 2
    status, out, _ = run(capsys, "audit", "tail", "-n", "1", "--path", str(log), "--json")
    assert json.loads(out)["seq"] == 2


def test_audit_verify_exits_3_when_broken(capsys, tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_text('{"seq": 1, "prev": "bad"}\n')
    status, out, _ = run(capsys, "audit", "verify", "--path", str(log))
    assert status == 3 and "BROKEN" in out


def test_policy_show_and_check(capsys, tmp_path):
    status, out, _ = run(capsys, "policy", "show", "--profile", "adult", "--json")
    data = json.loads(out)
    assert status == 0 and data["name"] == "adult"
    assert data["categories"]["minor_sexual"]["action"] == "block"
    bad = tmp_path / "bad.toml"
    bad.write_text('extends = "adult"\n[categories.minor_sexual]\naction = "allow"\n')
    status, out, err = run(capsys, "policy", "check", str(bad))
    assert status == 2 and f"{bad}:3:" in err and "cannot be relaxed" in err


def test_installed_entry_point_runs(tmp_path):
    exe = pathlib.Path(sys.executable).parent / "sdguard"
    proc = subprocess.run([str(exe), "policy", "show", "--json"], capture_output=True, text=True,
                          check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["name"] == "public"


def test_install_does_not_shadow_pypi_safety(tmp_path):
    # Outside the checkout, `safety` must not resolve to our source folder (PyPI's package may own it).
    code = ("import importlib.util, pathlib, sdguard; s = importlib.util.find_spec('safety'); "
            "ours = pathlib.Path(sdguard.__file__).resolve().parent; "
            "print('clash' if s and pathlib.Path(s.origin).resolve().parent == ours else 'ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert proc.stdout.strip() == "ok"


def test_import_sdguard_loads_no_heavy_dependency(tmp_path):
    code = ("import sys, sdguard; sdguard.check_prompt; "
            "print(sorted(m for m in ('numpy', 'torch', 'onnxruntime', 'PIL', 'cv2') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert proc.stdout.strip() == "[]"


def test_example_host_policy_blocks_its_listed_characters(capsys):
    status, out, _ = run(capsys, "check-prompt", "Ultraman fighting a kaiju", "--policy",
                         "examples/host-policy.toml", "--json")
    assert status == 3 and "ip_character" in json.loads(out)["codes"]


def test_damaged_audit_trail_is_a_clear_error_not_a_traceback(capsys, tmp_path, lexical_file):
    log = tmp_path / "audit.jsonl"
    run(capsys, "check-prompt", "a cat", "--policy", lexical_file, "--audit", str(log))
    with open(log, "a") as f:
        f.write("garbage\n")
    status, out, err = run(capsys, "check-prompt", "a dog", "--policy", lexical_file, "--audit", str(log))
    assert status == 2 and "damaged" in err
    status, out, err = run(capsys, "audit", "tail", "--path", str(log))
    assert status == 2 and "audit.jsonl:2: not an audit record" in err
    status, out, _ = run(capsys, "audit", "verify", "--path", str(log))
    assert status == 3 and "line 2" in out


@pytest.mark.parametrize("line", ['[1, 2]', '{"seq": 2, "x": 1}', '"text"', '{"seq": 2, "prev": "", "time": "", '
                                  '"stage": "prompt", "host": "cli", "hash": "", "verdict": []}'])
@pytest.mark.parametrize("json_mode", [False, True])
def test_audit_tail_names_a_line_that_is_json_but_no_record(capsys, tmp_path, lexical_file, line, json_mode):
    log = tmp_path / "audit.jsonl"
    run(capsys, "check-prompt", "a cat", "--policy", lexical_file, "--audit", str(log))
    with open(log, "a") as f:
        f.write(line + "\n")
    status, out, err = run(capsys, "audit", "tail", "--path", str(log), *(["--json"] if json_mode else []))
    assert (status, out) == (2, "") and "audit.jsonl:2: not an audit record" in err


DEEP_JSON = "[" * 100_000  # json parses nesting by recursion: this exhausts the stack


@pytest.mark.parametrize("argv, line, status, stream, words", [
    (["check-prompt", "--input", "{src}"], '{"prompt": ' + DEEP_JSON, 2, "err", "not valid JSON (nested too deeply)"),
    (["eval-prompts", "{src}"], '{"prompt": ' + DEEP_JSON, 2, "err", "not valid JSON (nested too deeply)"),
    (["audit", "verify", "--path", "{src}"], '{"seq": ' + DEEP_JSON, 3, "out", "not a JSON record (nested too deeply)"),
    (["audit", "tail", "--path", "{src}"], '{"seq": ' + DEEP_JSON, 2, "err", "in.jsonl:1: not an audit record"),
    (["check-prompt", "a cat", "--audit", "{src}"], '{"seq": ' + DEEP_JSON, 2, "err", "damaged"),
])
def test_json_nested_too_deeply_is_a_clear_error_not_a_traceback(capsys, tmp_path, lexical_file,
                                                                  argv, line, status, stream, words):
    src = tmp_path / "in.jsonl"
    src.write_text(line + "\n")
    argv = [a.replace("{src}", str(src)) for a in argv]
    if argv[0] != "audit":
        argv += ["--policy", lexical_file]
    got_status, out, err = run(capsys, *argv)
    assert got_status == status and words in {"out": out, "err": err}[stream]


def test_audit_of_a_missing_file_does_not_verify(capsys, tmp_path):
    status, _, err = run(capsys, "audit", "verify", "--path", str(tmp_path / "typo.jsonl"))
    assert status == 2 and "no audit trail" in err


def test_policy_audit_path_is_used_without_the_flag(capsys, tmp_path):
    log = tmp_path / "locked.jsonl"
    policy = tmp_path / "school.toml"
    policy.write_text(f'extends = "classroom"\n[prompt]\nsemantic = "off"\n[audit]\npath = "{log}"\n')
    run(capsys, "check-prompt", "nude", "--policy", str(policy))
    assert json.loads(log.read_text().splitlines()[0])["verdict"]["action"] == "block"


def test_exit_status_survives_a_closed_pipe(tmp_path, lexical_file):
    src = tmp_path / "in.txt"
    src.write_text("a cat\n" * 2000 + "nude\n")
    exe = pathlib.Path(sys.executable).parent / "sdguard"
    proc = subprocess.run(f"'{exe}' check-prompt --input '{src}' --policy '{lexical_file}' | head -1; "
                          "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr


def test_json_output_never_contains_nan(capsys):
    from sdguard.cli._common import print_json

    print_json({"mean": float("nan"), "x": [1.0, float("inf")], "ok": 0.5})
    assert json.loads(capsys.readouterr().out) == {"mean": None, "x": [1.0, None], "ok": 0.5}


@pytest.mark.skipif(sys.platform == "win32", reason="/dev/zero and FIFOs are POSIX")
@pytest.mark.parametrize("argv", [["check-prompt", "--input", "{src}"], ["check-image", "{src}"],
                                  ["inspect", "{src}", "--no-legacy"], ["eval-prompts", "{src}"],
                                  ["label", "{src}", "{out}"], ["scan-models", "{src}"]])
def test_a_link_to_an_endless_device_exits_2_instead_of_reading_forever(capsys, tmp_path, argv):
    src = tmp_path / "in.png"
    src.symlink_to("/dev/zero")
    out = tmp_path / "out.png"
    assert main([a.format(src=src, out=out) for a in argv]) == 2
    captured = capsys.readouterr()
    assert "not a regular file" in captured.err + captured.out
    assert not out.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="FIFOs are POSIX")
def test_a_pipe_named_on_the_command_line_is_read_and_one_in_a_folder_is_skipped(capsys, tmp_path,
                                                                                lexical_file):
    import os
    import threading

    pipe = tmp_path / "prompts.txt"
    os.mkfifo(pipe)                     # what <(...) and /dev/stdin hand over
    # A daemon that gives up: if check-prompt never opened the pipe, the test fails instead of hanging.
    writer = threading.Thread(target=pipe.write_text, args=("a red fox\nnude\n",), daemon=True)
    writer.start()
    status, out, _ = run(capsys, "check-prompt", "--input", str(pipe), "--policy", lexical_file, "--json")
    writer.join(timeout=10)
    assert not writer.is_alive()
    assert status == 3 and [json.loads(line)["action"] for line in out.splitlines()] == ["allow", "block"]
    album = tmp_path / "album"
    album.mkdir()
    os.mkfifo(album / "waiting.png")    # no writer: reading it would hang the walk
    status, _, err = run(capsys, "check-image", str(album))
    assert status == 2 and "no image files found" in err
