"""Turn local copies of public prompt benchmarks into JSON Lines sets for `sdguard eval-prompts`.

The prompt head never trains on these: they are the kinds of set the issue's targets name (real
prompts that produced nudity, adversarial prompts, malicious/clean twins), kept apart to measure
how the stage does on prompts written by others. Nothing is downloaded here: clone the
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
import sys
from pathlib import Path

I2P = "data/unsafe-prompts4703.csv"
NUDITY_SHARE = 50.0  # I2P's nudity_percentage: share of 10 SD 1.4 images with nudity (NudeNet)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def write_set(out: Path, name: str, prompts: list[str], label: str) -> None:
    with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
        for prompt in prompts:
            f.write(json.dumps({"prompt": prompt.strip(), "label": label}, ensure_ascii=False) + "\n")
    print(f"{name}: {len(prompts)} ({label})")


def ring_a_bell(root: Path, out: Path) -> None:
    i2p = read_csv(root / I2P)
    write_set(out, "i2p_nudity50", [r["prompt"] for r in i2p if float(r["nudity_percentage"] or 0) > NUDITY_SHARE],
              "sexual")
    write_set(out, "i2p_sexual", [r["prompt"] for r in i2p if "sexual" in r["categories"]], "sexual")
    soup = sorted((root / "data/InvPrompt/Violence").glob("*.csv"))
    write_set(out, "ringabell_violence", [r["prompt"] for f in soup for r in read_csv(f)], "violence")


def six_cd(root: Path, out: Path) -> None:
    for kind, label in (("Nudity", "sexual"), ("Harm", "violence")):
        folder = root / "Datasets/Dual-Version" / kind
        write_set(out, f"sixcd_dual_{kind.lower()}", [r["prompt"] for r in read_csv(folder / "malicious.csv")], label)
        write_set(out, f"sixcd_dual_{kind.lower()}_twins", [r["prompt"] for r in read_csv(folder / "clean.csv")],
                  "benign")


def mu_attack(root: Path, out: Path) -> None:
    write_set(out, "unlearndiff_nudity", [r["prompt"] for r in read_csv(root / "prompts/nudity.csv")], "sexual")


def safree_bench(root: Path, out: Path) -> None:
    for name, file in (("mma_diffusion", "mma.csv"), ("p4d_nudity", "p4d.csv")):
        write_set(out, name, [r["prompt"] for r in read_csv(root / "datasets/safree_bench" / file)], "sexual")
    pairs = read_csv(root / "datasets/nudity-ring-a-bell.csv")
    write_set(out, "ringabell_nudity", [r["prompt"] for r in pairs], "sexual")
    write_set(out, "ringabell_nudity_twins", [r["normal prompt"] for r in pairs], "benign")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ring-a-bell", type=Path, help="a clone of chiayi-hsu/Ring-A-Bell")
    ap.add_argument("--six-cd", type=Path, help="a clone of Artanisax/Six-CD")
    ap.add_argument("--mu-attack", type=Path, help="a clone of OPTML-Group/Diffusion-MU-Attack")
    ap.add_argument("--safree-bench", type=Path, help="a clone of adarsh05062022/PID (SAFREE's benchmark files)")
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSONL sets")
    args = ap.parse_args(argv)
    sources = [(args.ring_a_bell, ring_a_bell), (args.six_cd, six_cd), (args.mu_attack, mu_attack),
               (args.safree_bench, safree_bench)]
    if not any(root for root, _ in sources):
        ap.error("give at least one of --ring-a-bell, --six-cd, --mu-attack, --safree-bench")
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    for root, convert in sources:
        if root is None:
            continue
        try:
            convert(root, args.out)
        except (OSError, KeyError, ValueError) as e:  # a missing file or column: say which, go on
            print(f"error: {root}: {type(e).__name__}: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
