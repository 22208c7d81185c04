"""The whole prompt stage (lexical + gate + head, `public`) on an eval set the head never saw.

    python training/eval_stage_left_out.py nudity_sixcd [--eval-dir DIR]

Retrains the head and its gate without the named sets (as `train_prompt_head.py --leave-out`
does; thresholds recalibrated), installs that head in this process, and runs `sdguard eval-prompts
--combined` on the left-out sets and on all COCO captions. For nudity_sixcd it also splits the set
into MMA-style token soup (a `<|startoftext|>` or a 14+-letter glued word) and the rest, and prints
the semantic stage alone beside the whole stage. `--prefix N` also runs the left-out sets with N
random words before each prompt (the shape of UnlearnDiffAtk's adversarial prefixes; whole words
of the encoder's vocabulary that no term list flags). Nothing is written to `weights/`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
from pathlib import Path

import train_prompt_head as train

from sdguard import prompt_semantic
from sdguard.cli import main as cli_main

SOUP = re.compile(r"<\|startoftext\|>|\b[a-z]{14,}\b")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="+", help="eval sets to leave out of training (file stems)")
    ap.add_argument("--eval-dir", type=Path, default=train.DEFAULT_EVAL_DIR)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sdguard-train")
    ap.add_argument("--prefix", type=int, default=0, metavar="N",
                    help="also run with N random words before each prompt")
    args = ap.parse_args(argv)
    if args.prefix < 0:
        ap.error(f"--prefix takes a word count >= 0, got {args.prefix}")

    sets = train.load_sets([args.eval_dir, train.DATA_DIR])
    unknown = sorted(set(args.sets) - {s.name for s in sets if (args.eval_dir / f"{s.name}.jsonl").is_file()})
    if unknown:
        ap.error(f"not an eval set in {args.eval_dir}: {', '.join(unknown)}")
    vectors = {s.name: train.embed(s.prompts, args.cache) for s in sets}
    bag_vectors = {s.name: train.bags(s.prompts) for s in sets}
    (params, thresholds), (gate, gate_thresholds), _ = train.fit(
        sets, vectors, bag_vectors, train.DEFAULT_FP_TARGET, train.DEFAULT_GATE_FP, args.sets)
    # Replace the process-wide head that the CLI below loads on first use.
    prompt_semantic._HEADS["minilm"] = (prompt_semantic.PromptHead(
        "left-out", "-".join(args.sets), train.CATEGORIES, thresholds, params, gate, gate_thresholds),)
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "left-out.toml"
        policy.write_text('extends = "public"\nname = "left-out"\n' + "".join(
            f"[categories.{c}]\nthresholds = {{ semantic = {t} }}\n" for c, t in thresholds.items()))
        files = [args.eval_dir / f"{name}.jsonl" for name in (*args.sets, "benign_coco10k")]
        status = cli_main(["eval-prompts", "--combined", "--policy", str(policy), *map(str, files)])
        if "nudity_sixcd" in args.sets:
            rows = _read_rows(args.eval_dir / "nudity_sixcd.jsonl")
            parts = {"nudity_soup": [r for r in rows if SOUP.search(r["prompt"])],
                     "nudity_rest": [r for r in rows if not SOUP.search(r["prompt"])]}
            split = [_write_rows(Path(tmp) / f"{name}.jsonl", part) for name, part in parts.items()]
            status = status or _whole_then_semantic(policy, split)
        if args.prefix:
            words, rng = noise_words(), random.Random("prefix")
            prefixed = []
            for name in args.sets:
                rows = [{**r, "prompt": " ".join(rng.choice(words) for _ in range(args.prefix)) + " " + r["prompt"]}
                        for r in _read_rows(args.eval_dir / f"{name}.jsonl")]
                prefixed.append(_write_rows(Path(tmp) / f"{name}_prefix{args.prefix}.jsonl", rows))
            status = status or _whole_then_semantic(policy, prefixed, f"{args.prefix} random words before each prompt, ")
    return status


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


def _write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return str(path)


def _whole_then_semantic(policy: Path, files: list[str], what: str = "") -> int:
    """`eval-prompts` on `files`, the whole stage, then (if that passed) the semantic stage alone."""
    print(f"\n{what}whole stage:")
    status = cli_main(["eval-prompts", "--combined", "--policy", str(policy), *files])
    print("\nsemantic stage alone:")
    return status or cli_main(["eval-prompts", "--policy", str(policy), *files])


def noise_words() -> list[str]:
    """Whole words (alphabetic, 4+ letters) of the encoder's vocabulary that no term list flags."""
    from tokenizers import Tokenizer

    from sdguard.prompt_lexical import Lexicon
    from sdguard.text_encoder import find_model_dir

    vocab = Tokenizer.from_file(str(find_model_dir() / "tokenizer.json")).get_vocab()
    lexicon = Lexicon.default()
    return sorted(w for w in vocab if w.isalpha() and len(w) > 3 and not lexicon.scan(w))


if __name__ == "__main__":
    sys.exit(main())
