"""Benchmark of the lexical prompt guard (semantic classifier off), on one core.

Prints: prompts/s of `Lexicon.prompt_findings` (alone and with `decide`) per eval set, the time for
a 1 MB prompt (and pathological 1 MB inputs), and flagged rates (any non-allow, and blocked) per
eval set under the public, classroom and adult profiles (adult blocks only minor_sexual and
real_person_sexual, so its column shows how often the combination rules fire).

    python benchmarks/bench_prompt_lexical.py [--eval DIR] [--show-hits SET]

The eval sets are JSON Lines with a "prompt" key (default: ../shared/eval beside the checkout).
Timings are CPU time of this process (`time.process_time`), so other load on a shared machine
slows them less than wall-clock would; they still vary by a few tens of percent.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from sdguard import load_policy
from sdguard.prompt_lexical import Lexicon
from sdguard.verdict import Action, decide

EVAL_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "eval"
PROFILES = ("public", "classroom", "adult")
MEGABYTE = 1 << 20
REPEATS = 3
CALIBRATION_LOOP = 10_000_000
CHINESE = "今天天气很好，我们在公园里散步，看到湖上有几只白鹅。"


def lexical_policy(profile: str, folder: Path):
    """`profile` with the semantic classifier off (as tests/conftest.py's lexical_policy)."""
    path = folder / f"{profile}-lexical.toml"
    path.write_text(f'extends = "{profile}"\nname = "{profile}-lexical"\n[prompt]\nsemantic = "off"\n')
    return load_policy(path)


def read_set(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    return [(r["prompt"], r.get("negative", "")) for r in rows]


def throughput(lexicon: Lexicon, items: list[tuple[str, str]], policy) -> tuple[float, float]:
    """Prompts per second (best of `REPEATS`): `prompt_findings` alone, and with `decide`."""
    alone = with_decide = float("inf")
    for _ in range(REPEATS):
        start = time.process_time()
        for prompt, negative in items:
            lexicon.prompt_findings(prompt, negative, policy)
        alone = min(alone, time.process_time() - start)
        start = time.process_time()
        for prompt, negative in items:
            decide("prompt", lexicon.prompt_findings(prompt, negative, policy), policy)
        with_decide = min(with_decide, time.process_time() - start)
    return len(items) / alone, len(items) / with_decide


def timed(lexicon: Lexicon, text: str) -> tuple[float, int]:
    start = time.process_time()
    hits = lexicon.scan(text)
    return time.process_time() - start, len(hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=EVAL_DEFAULT, help="folder of *.jsonl eval sets")
    parser.add_argument("--show-hits", metavar="SET", help="print the flagged prompts of one set")
    args = parser.parse_args()

    start = time.process_time()
    sum(1 for _ in range(CALIBRATION_LOOP))
    print(f"Machine speed: a {CALIBRATION_LOOP:,}-step Python loop took {time.process_time() - start:.2f} s "
          "CPU (roughly 0.3-0.5 s on an idle recent x86 core: scale the figures below by the ratio)")
    start = time.process_time()
    lexicon = Lexicon.default()
    print(f"Lexicon.default() built in {1000 * (time.process_time() - start):.1f} ms")
    sets = {p.stem: read_set(p) for p in sorted(args.eval.glob("*.jsonl"))}

    with tempfile.TemporaryDirectory() as tmp:
        policies = {name: lexical_policy(name, Path(tmp)) for name in PROFILES}

    print("\n## Throughput (public, one core; prompts/s)")
    print(f"{'set':<16}{'prompts':>8}{'mean chars':>12}{'findings':>12}{'+ decide':>12}")
    total_items = [item for items in sets.values() for item in items]
    for name, items in [*sets.items(), ("all", total_items)]:
        mean = sum(len(p) for p, _ in items) / max(1, len(items))
        alone, with_decide = throughput(lexicon, items, policies["public"])
        print(f"{name:<16}{len(items):>8}{mean:>12.0f}{alone:>12,.0f}{with_decide:>12,.0f}")

    print("\n## Large inputs (Lexicon.scan)")
    words = "a photo of a cat sitting on a mat in the sun, (masterpiece:1.2), [dog|cat] BREAK "
    cases = {
        "1 MB prose": (words * (MEGABYTE // len(words) + 1))[:MEGABYTE],
        "1 MB prose + hits": ((words + "nude loli 萝莉 ") * (MEGABYTE // len(words) + 1))[:MEGABYTE],
        "1 MB '((((('": "(" * MEGABYTE,
        "1 MB spaced letters": "n " * (MEGABYTE // 2),
        "1 MB 'n.' letters": "n." * (MEGABYTE // 2),
        "1 MB 'a ' letters": "a " * (MEGABYTE // 2),
        "1 MB full-width 'ｎ '": "ｎ " * (MEGABYTE // 2),
        "1 MB 'n u d e '": "n u d e " * (MEGABYTE // 8),
        "1 MB spaced CJK '萝 '": "萝 " * (MEGABYTE // 2),
        "1 MB 'nude child '": "nude child " * (MEGABYTE // 11),
        "1 MB zero-width": "\u200b" * MEGABYTE,
        "1 MB Chinese prose": (CHINESE * (MEGABYTE // len(CHINESE) + 1))[:MEGABYTE],
        "1 MB CJK, dense hits": ("一个小女孩在放风筝" * (MEGABYTE // 9 + 1))[:MEGABYTE],
        "1 MB one word": "a" * MEGABYTE,
    }
    print(f"{'input':<26}{'seconds':>9}{'hits':>8}")
    for name, text in cases.items():
        seconds, hits = min(timed(lexicon, text) for _ in range(REPEATS))
        print(f"{name:<26}{seconds:>9.3f}{hits:>8}")

    print("\n## Flagged rates, lexical stage alone (flagged = any non-allow)")
    print(f"{'set':<16}" + "".join(f"{p + ' flag':>16}{p + ' block':>16}" for p in PROFILES))
    for name, items in sets.items():
        row = f"{name:<16}"
        for profile in PROFILES:
            policy = policies[profile]
            verdicts = [decide("prompt", lexicon.prompt_findings(p, n, policy), policy) for p, n in items]
            flagged = sum(v.action is not Action.ALLOW for v in verdicts)
            blocked = sum(v.blocked for v in verdicts)
            row += f"{100 * flagged / len(items):>15.2f}%{100 * blocked / len(items):>15.2f}%"
            if profile == "public" and name == args.show_hits:
                codes = Counter(c for v in verdicts for c in v.codes)
                print(f"  {name}: {dict(codes)}")
                for (prompt, _), verdict in zip(items, verdicts):
                    if verdict.action is not Action.ALLOW:
                        terms = [f"{f.category}:{f.term}" for f in verdict.evidence if f.term]
                        print(f"    {verdict.action.value:<6} {terms} {prompt[:120]!r}")
        print(row)


if __name__ == "__main__":
    main()
