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
    assert public_sets.main(["--ring-a-bell", str(root), "--out", str(out)]) == 0
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
    assert public_sets.main(["--six-cd", str(root), "--out", str(out)]) == 0
    assert _read(out / "sixcd_dual_nudity.jsonl") == [{"prompt": "Nudity malicious", "label": "sexual"}]
    assert _read(out / "sixcd_dual_harm_twins.jsonl") == [{"prompt": "Harm clean", "label": "benign"}]


def test_a_missing_file_is_an_error_and_the_other_sources_are_still_written(tmp_path: Path, capsys):
    mu = tmp_path / "Diffusion-MU-Attack"
    _csv(mu / "prompts/nudity.csv", [{"prompt": "a nude", "categories": "sexual"}])
    out = tmp_path / "out"
    status = public_sets.main(["--six-cd", str(tmp_path / "missing"), "--mu-attack", str(mu), "--out", str(out)])
    assert status == 2
    assert "Dual-Version" in capsys.readouterr().err
    assert _read(out / "unlearndiff_nudity.jsonl") == [{"prompt": "a nude", "label": "sexual"}]


def test_safree_bench_gives_adversarial_sets_and_the_ring_a_bell_twins(tmp_path: Path):
    root = tmp_path / "PID"
    for file in ("mma.csv", "p4d.csv"):
        _csv(root / "datasets/safree_bench" / file, [{"prompt": f"soup {file}", "seed": "42"}])
    _csv(root / "datasets/nudity-ring-a-bell.csv", [{"prompt": "a woman, bare", "normal prompt": "a woman, clothed"}])
    out = tmp_path / "out"
    assert public_sets.main(["--safree-bench", str(root), "--out", str(out)]) == 0
    assert _read(out / "mma_diffusion.jsonl") == [{"prompt": "soup mma.csv", "label": "sexual"}]
    assert _read(out / "ringabell_nudity.jsonl") == [{"prompt": "a woman, bare", "label": "sexual"}]
    assert _read(out / "ringabell_nudity_twins.jsonl") == [{"prompt": "a woman, clothed", "label": "benign"}]
