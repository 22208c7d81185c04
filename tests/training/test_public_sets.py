"""training/public_sets.py: public benchmark files → JSON Lines sets for `sdguard eval-prompts`."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))

import public_sets  # noqa: E402


def _csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _main(tmp_path: Path, *args: str) -> int:
    """public_sets.main with nothing seen (an empty --seen folder) unless `args` name one."""
    nothing = tmp_path / "nothing-seen"
    nothing.mkdir(exist_ok=True)
    return public_sets.main([*args] if "--seen" in args else [*args, "--seen", str(nothing)])


def _read(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_i2p_keeps_prompts_that_produced_nudity_more_than_half_the_time(tmp_path: Path):
    root = tmp_path / "Ring-A-Bell"
    _csv(root / public_sets.I2P, [
        {"prompt": "a nude by bouguereau ", "categories": "sexual", "nudity_percentage": "60.0"},
        {"prompt": "half the time", "categories": "sexual", "nudity_percentage": "50.0"},
        {"prompt": "a riot", "categories": "violence", "nudity_percentage": ""},
    ])
    _csv(root / "data/InvPrompt/Violence/K77.csv", [{"prompt": "gun bleeds soup", "case_number": "0"}])
    out = tmp_path / "out"
    assert _main(tmp_path, "--ring-a-bell", str(root), "--out", str(out)) == 0
    assert _read(out / "i2p_nudity50.jsonl") == [{"prompt": "a nude by bouguereau", "label": "sexual"}]
    assert [r["prompt"] for r in _read(out / "i2p_sexual.jsonl")] == ["a nude by bouguereau", "half the time"]
    assert _read(out / "ringabell_violence.jsonl") == [{"prompt": "gun bleeds soup", "label": "violence"}]


def test_six_cd_dual_version_gives_malicious_sets_and_benign_twins(tmp_path: Path):
    root = tmp_path / "Six-CD"
    for kind in ("Nudity", "Harm"):
        folder = root / "Datasets/Dual-Version" / kind
        _csv(folder / "malicious.csv", [{"case_number": "0", "prompt": f"{kind} malicious"}])
        _csv(folder / "clean.csv", [{"case_number": "0", "prompt": f"{kind} clean"}])
    out = tmp_path / "out"
    assert _main(tmp_path, "--six-cd", str(root), "--out", str(out)) == 0
    assert _read(out / "sixcd_dual_nudity.jsonl") == [{"prompt": "Nudity malicious", "label": "sexual"}]
    assert _read(out / "sixcd_dual_nudity_twins.jsonl") == [{"prompt": "Nudity clean", "label": "benign"}]
    assert _read(out / "sixcd_dual_harm.jsonl") == [{"prompt": "Harm malicious", "label": "violence"}]
    assert _read(out / "sixcd_dual_harm_twins.jsonl") == [{"prompt": "Harm clean", "label": "benign"}]


def test_a_missing_file_is_an_error_and_the_other_sources_are_still_written(tmp_path: Path, capsys):
    mu = tmp_path / "Diffusion-MU-Attack"
    _csv(mu / "prompts/nudity.csv", [{"prompt": "a nude", "categories": "sexual"}])
    out = tmp_path / "out"
    status = _main(tmp_path, "--six-cd", str(tmp_path / "missing"), "--mu-attack", str(mu), "--out", str(out))
    assert status == 2
    assert "Dual-Version" in capsys.readouterr().err
    assert _read(out / "unlearndiff_nudity.jsonl") == [{"prompt": "a nude", "label": "sexual"}]


def test_safree_bench_gives_adversarial_sets_and_the_ring_a_bell_twins(tmp_path: Path):
    root = tmp_path / "PID"
    for file in ("mma.csv", "p4d.csv"):
        _csv(root / "datasets/safree_bench" / file, [{"prompt": f"soup {file}", "seed": "42"}])
    _csv(root / "datasets/nudity-ring-a-bell.csv", [{"prompt": "a woman, bare", "normal prompt": "a woman, clothed"}])
    out = tmp_path / "out"
    assert _main(tmp_path, "--safree-bench", str(root), "--out", str(out)) == 0
    assert _read(out / "mma_diffusion.jsonl") == [{"prompt": "soup mma.csv", "label": "sexual"}]
    assert _read(out / "p4d_nudity.jsonl") == [{"prompt": "soup p4d.csv", "label": "sexual"}]
    assert _read(out / "ringabell_nudity.jsonl") == [{"prompt": "a woman, bare", "label": "sexual"}]
    assert _read(out / "ringabell_nudity_twins.jsonl") == [{"prompt": "a woman, clothed", "label": "benign"}]


def test_prompts_the_head_saw_repeats_and_empty_prompts_are_dropped(tmp_path: Path):
    seen = tmp_path / "seen"
    seen.mkdir()
    (seen / "nudity_sixcd.jsonl").write_text(json.dumps({"prompt": "Soup  ONE", "label": "sexual"}) + "\n")
    root = tmp_path / "PID"
    _csv(root / "datasets/safree_bench/mma.csv",
         [{"prompt": p} for p in ("soup one", "soup two", "Soup two ", "  ")])
    _csv(root / "datasets/safree_bench/p4d.csv", [{"prompt": "p4d"}])
    _csv(root / "datasets/nudity-ring-a-bell.csv", [{"prompt": "bare", "normal prompt": "clothed"}])
    out = tmp_path / "out"
    assert _main(tmp_path, "--safree-bench", str(root), "--seen", str(seen), "--out", str(out)) == 0
    assert _read(out / "mma_diffusion.jsonl") == [{"prompt": "soup two", "label": "sexual"}]


def test_a_bom_is_ignored_and_a_missing_column_names_the_file(tmp_path: Path, capsys):
    root = tmp_path / "MU"
    path = root / "prompts/nudity.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\ufeffprompt,categories\na nude,sexual\n", encoding="utf-8")
    out = tmp_path / "out"
    assert _main(tmp_path, "--mu-attack", str(root), "--out", str(out)) == 0
    assert _read(out / "unlearndiff_nudity.jsonl") == [{"prompt": "a nude", "label": "sexual"}]
    path.write_text("text,categories\na nude,sexual\n", encoding="utf-8")
    assert _main(tmp_path, "--mu-attack", str(root), "--out", str(tmp_path / "out2")) == 2
    assert "nudity.csv: no column 'prompt'" in capsys.readouterr().err


def test_a_source_with_a_bad_file_writes_none_of_its_sets(tmp_path: Path, capsys):
    root = tmp_path / "Ring-A-Bell"
    _csv(root / public_sets.I2P, [{"prompt": "a nude", "categories": "sexual", "nudity_percentage": "90"}])
    out = tmp_path / "out"
    assert _main(tmp_path, "--ring-a-bell", str(root), "--out", str(out)) == 2  # no violence CSVs
    assert "InvPrompt/Violence: no CSV files" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())


def test_a_row_shorter_than_the_header_is_an_error_naming_the_line(tmp_path: Path, capsys):
    root = tmp_path / "MU"
    path = root / "prompts/nudity.csv"
    path.parent.mkdir(parents=True)
    path.write_text("categories,prompt\nsexual,a nude\nsexual\n", encoding="utf-8")
    assert _main(tmp_path, "--mu-attack", str(root), "--out", str(tmp_path / "out")) == 2
    assert "nudity.csv: line 3 has fewer fields than the header" in capsys.readouterr().err
