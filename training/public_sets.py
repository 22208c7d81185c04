"""Turn local copies of public prompt benchmarks into JSON Lines sets for `sdguard eval-prompts`.

The prompt head never trains on these: they are the kinds of set the issue's targets name (real
prompts that produced nudity, adversarial prompts, malicious/clean twins), kept apart to measure
how the stage does on prompts written by others. Some of them overlap what the head did train on
(Six-CD bundles MMA-Diffusion soup), so every prompt already in `../shared/eval` or
`training/data` is dropped (case and spacing ignored), and so are repeats and empty prompts; the
script prints how many. Nothing is downloaded here: clone the
repositories (or copy the files) yourself, then point this script at them.

    git clone https://github.com/chiayi-hsu/Ring-A-Bell
    git clone https://github.com/Artanisax/Six-CD
    git clone https://github.com/OPTML-Group/Diffusion-MU-Attack
    git clone https://github.com/adarsh05062022/PID
    python training/public_sets.py --ring-a-bell Ring-A-Bell --six-cd Six-CD \
        --mu-attack Diffusion-MU-Attack --safree-bench PID --out /tmp/public-sets
    sdguard eval-prompts --combined /tmp/public-sets/*.jsonl

Sets written (a source that is not given is skipped):
- i2p_nudity50: I2P prompts (`data/unsafe-prompts4703.csv` in Ring-A-Bell, a copy of Safe Latent
  Diffusion's I2P) whose SD 1.4 images showed nudity more than half the time: 95 prompts.
- i2p_sexual: every I2P prompt in the `sexual` category (931; most did not produce nudity).
- unlearndiff_nudity: UnlearnDiffAtk's nudity prompts (`prompts/nudity.csv`, 142, from I2P).
- sixcd_dual_nudity / sixcd_dual_nudity_twins, sixcd_dual_harm / sixcd_dual_harm_twins: Six-CD's
  dual version (`Datasets/Dual-Version/{Nudity,Harm}/{malicious,clean}.csv`, 100 pairs each):
  each malicious prompt and its clean twin.
- ringabell_violence: Ring-A-Bell's optimised violence prompts (`data/InvPrompt/Violence/*.csv`, 750
  token-soup prompts).
- mma_diffusion, p4d_nudity: the adversarial nudity prompts of MMA-Diffusion (1,000 token-soup
  prompts) and P4D (151), as SAFREE benchmarks them; copies in the PID repository
  (`datasets/safree_bench/{mma,p4d}.csv`).
- ringabell_nudity / ringabell_nudity_twins: the 79 nudity sentences SAFREE uses as "Ring-A-Bell",
  each with its clothed twin (`datasets/nudity-ring-a-bell.csv`, columns `prompt`, `normal prompt`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import train_prompt_head as train

# What the head may have trained on: the development sets beside the checkout and our own data.
SEEN_DIRS = (train.DEFAULT_EVAL_DIR, train.DATA_DIR)
I2P = "data/unsafe-prompts4703.csv"
RING_A_BELL_VIOLENCE = "data/InvPrompt/Violence"
SIX_CD_DUAL = "Datasets/Dual-Version"
MU_ATTACK_NUDITY = "prompts/nudity.csv"
SAFREE_BENCH = "datasets/safree_bench"
SAFREE_RING_A_BELL = "datasets/nudity-ring-a-bell.csv"
# "Prompts that produced nudity": I2P's nudity_percentage (share of 10 SD 1.4 images in which
# NudeNet found nudity) above half, the cut Ring-A-Bell and later papers use (95 prompts).
MIN_NUDITY_PERCENTAGE = 50.0


def normalise(prompt: str) -> str:
    return " ".join(prompt.lower().split())


def seen_prompts(folders: list[Path]) -> set[str]:
    """Every prompt of the JSONL sets in `folders` (read as training reads them), normalised."""
    return {normalise(prompt) for s in train.load_sets(folders) for prompt in s.prompts}


def read_csv(path: Path, *columns: str) -> list[dict[str, str]]:
    """Rows of a CSV file (a BOM is ignored) that must have `columns`; a short row is an error."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {', '.join(map(repr, missing))} (has: {reader.fieldnames})")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if any(row[c] is None for c in columns):
            raise ValueError(f"{path}: line {number} has fewer fields than the header")
    return rows


def write_set(out: Path, name: str, prompts: list[str], label: str, seen: set[str]) -> None:
    """Write the new, distinct, non-empty prompts as `name`.jsonl (whole or not at all)."""
    kept: dict[str, str] = {}
    for prompt in prompts:
        key = normalise(prompt)
        if key and key not in seen:
            kept.setdefault(key, prompt.strip())
    if not kept:
        raise ValueError(f"{name}: no prompts left of {len(prompts)}")
    partial = out / f".{name}.jsonl.partial"
    with partial.open("w", encoding="utf-8") as f:
        for prompt in kept.values():
            f.write(json.dumps({"prompt": prompt, "label": label}, ensure_ascii=False) + "\n")
    os.replace(partial, out / f"{name}.jsonl")
    print(f"{name}: {len(kept)} ({label}; {len(prompts) - len(kept)} of {len(prompts)} dropped: seen, repeated or empty)")


def ring_a_bell(root: Path) -> list[tuple[str, list[str], str]]:
    i2p = read_csv(root / I2P, "prompt", "categories", "nudity_percentage")
    soup = sorted((root / RING_A_BELL_VIOLENCE).glob("*.csv"))
    if not soup:
        raise FileNotFoundError(f"{root / RING_A_BELL_VIOLENCE}: no CSV files")
    return [("i2p_nudity50", [r["prompt"] for r in i2p
                              if float(r["nudity_percentage"] or 0) > MIN_NUDITY_PERCENTAGE], "sexual"),
            ("i2p_sexual", [r["prompt"] for r in i2p if "sexual" in r["categories"]], "sexual"),
            ("ringabell_violence", [r["prompt"] for f in soup for r in read_csv(f, "prompt")], "violence")]


def six_cd(root: Path) -> list[tuple[str, list[str], str]]:
    sets = []
    for kind, label in (("Nudity", "sexual"), ("Harm", "violence")):
        folder = root / SIX_CD_DUAL / kind
        sets.append((f"sixcd_dual_{kind.lower()}", [r["prompt"] for r in read_csv(folder / "malicious.csv", "prompt")],
                     label))
        sets.append((f"sixcd_dual_{kind.lower()}_twins", [r["prompt"] for r in read_csv(folder / "clean.csv", "prompt")],
                     "benign"))
    return sets


def mu_attack(root: Path) -> list[tuple[str, list[str], str]]:
    return [("unlearndiff_nudity", [r["prompt"] for r in read_csv(root / MU_ATTACK_NUDITY, "prompt")], "sexual")]


def safree_bench(root: Path) -> list[tuple[str, list[str], str]]:
    pairs = read_csv(root / SAFREE_RING_A_BELL, "prompt", "normal prompt")
    return [("mma_diffusion", [r["prompt"] for r in read_csv(root / SAFREE_BENCH / "mma.csv", "prompt")], "sexual"),
            ("p4d_nudity", [r["prompt"] for r in read_csv(root / SAFREE_BENCH / "p4d.csv", "prompt")], "sexual"),
            ("ringabell_nudity", [r["prompt"] for r in pairs], "sexual"),
            ("ringabell_nudity_twins", [r["normal prompt"] for r in pairs], "benign")]


# command-line flag → (the repository to clone, the reader of its sets)
SOURCES = {
    "ring_a_bell": ("chiayi-hsu/Ring-A-Bell", ring_a_bell),
    "six_cd": ("Artanisax/Six-CD", six_cd),
    "mu_attack": ("OPTML-Group/Diffusion-MU-Attack", mu_attack),
    "safree_bench": ("adarsh05062022/PID (SAFREE's benchmark files)", safree_bench),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, (repository, _) in SOURCES.items():
        ap.add_argument(f"--{flag.replace('_', '-')}", type=Path, help=f"a clone of {repository}")
    ap.add_argument("--seen", type=Path, action="append", default=None,
                    help="a folder of JSONL sets the head trained on (default: ../shared/eval and training/data)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSONL sets")
    args = ap.parse_args(argv)
    given = [(getattr(args, flag), read) for flag, (_, read) in SOURCES.items() if getattr(args, flag)]
    if not given:
        ap.error("give at least one of " + ", ".join(f"--{f.replace('_', '-')}" for f in SOURCES))
    seen = seen_prompts(args.seen or list(SEEN_DIRS))
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for root, read in given:
        try:  # a source's sets are all read before any is written: none of them, or all
            sets = read(root)
            for name, prompts, label in sets:
                write_set(args.out, name, prompts, label, seen)
        except (OSError, ValueError, csv.Error) as e:  # say which file and go on with the next source
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
