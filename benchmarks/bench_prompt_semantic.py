"""Benchmark the semantic prompt classifier: load time and ms per prompt on ONE CPU core.

    python benchmarks/bench_prompt_semantic.py [--threads 1] [--sets DIR] [--encoder minilm|mpnet]

"gated" is the stage as it runs (the gate clears most harmless prompts before the encoder; with
`--encoder mpnet`, MiniLM's head then clears most of the rest before MPNet); "encoder" is every
prompt encoded by the last encoder (what a policy with a lowered semantic threshold pays); "share"
is the share of prompts the last encoder read in the gated run.
Prompts come from the eval sets when present (short COCO captions, long Six-CD nudity prompts),
else from seeded synthetic prompts of caption-like and SD-prompt-like lengths. Batch mode is how
`check-prompt --input` and `eval-prompts` run; "single" is one prompt per call (a host's generate
button). Reported next to the cost it adds to: one SD 1.5 sampling step is ~50-100 ms on a GPU.
Per-prompt figures are process CPU time (one BLAS thread, so that is one core's work): on a shared
machine wall time also counts the time other processes hold the core. "GFLOP/s" is the encoder's
matrix-multiply work (about 21 MFLOP per token for MiniLM, 170 for MPNet) over the batch time: the float32 peak of one core
of the project VM is about 86 GFLOP/s (a 2048² numpy matmul), which bounds what batching can reach.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

# Matrix-multiply FLOPs per token (layers x 2 x width x (QKV + output + FFN in + FFN out widths);
# attention scores excluded): MiniLM-L6 (6 x 384) and MPNet-base (12 x 768).
FLOP_PER_TOKEN = {"minilm": 6 * 2 * 384 * (1152 + 384 + 1536 + 1536),
                  "mpnet": 12 * 2 * 768 * (2304 + 768 + 3072 + 3072)}
SETS = (("benign_coco10k", 12), ("benign_parti", 12), ("benign_sixcd", 20), ("harm_sixcd", 40), ("nudity_sixcd", 45))
SYNTHETIC_WORDS = ("portrait woman forest castle dragon light golden hour detailed painting city night rain "
                   "neon cat dog river mountain oil canvas masterpiece cinematic sharp focus artstation").split()


def _set_threads(n: int) -> None:
    # BLAS reads these at import, so they must be set before numpy loads.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _prompts(folder: Path, name: str, n: int, words: int, rng: random.Random) -> tuple[str, list[str]]:
    path = folder / f"{name}.jsonl"
    if path.is_file():
        rows = [json.loads(line)["prompt"] for line in path.read_text("utf-8").splitlines() if line.strip()]
        return name, rng.sample(rows, min(n, len(rows)))
    return (f"synthetic-{words}w",
            [" ".join(rng.choice(SYNTHETIC_WORDS) for _ in range(words)) for _ in range(n)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "eval",
                    help="eval sets (default: ../shared/eval beside the checkout)")
    ap.add_argument("-n", type=int, default=400, help="prompts per set")
    ap.add_argument("--encoder", choices=sorted(FLOP_PER_TOKEN), default="minilm",
                    help="the policy's [prompt] semantic_encoder")
    args = ap.parse_args()
    _set_threads(args.threads)
    import numpy as np

    from sdguard import prompt_semantic
    from sdguard.text_encoder import load_encoder

    t0 = time.perf_counter()
    heads = prompt_semantic.default_heads(args.encoder)
    t1 = time.perf_counter()
    loads = []
    for head in heads:
        t = time.perf_counter()
        encoder = load_encoder(head.encoder)
        loads.append(f"{head.encoder} {time.perf_counter() - t:.2f} s")
    print(f"load: encoders {', '.join(loads)}; heads {1000 * (t1 - t0):.1f} ms  "
          f"(threads={args.threads}, numpy {np.__version__})")

    rng = random.Random(0)
    sets = [_prompts(args.sets, name, args.n, words, rng) for name, words in SETS]
    prompt_semantic.semantic_scores(["warm-up"], 128, heads, use_gate=False)
    print(f"{'':<18} {'':>7} {'mean':>6} {'batch CPU ms/prompt':>20} {'encoded':>8} {'encoder':>8} "
          f"{'single CPU ms':>14}")
    print(f"{'set':<18} {'prompts':>7} {'tokens':>6} {'gated':>9} {'encoder':>10} {'share':>8} {'GFLOP/s':>8} "
          f"{'gated':>14}")
    for name, prompts in sets:
        tokens = sum(len(ids) for ids in encoder.tokenize(prompts, 128))
        t = time.process_time()
        _, stage = prompt_semantic.semantic_scores(prompts, 128, heads)
        gated = time.process_time() - t
        t = time.process_time()
        prompt_semantic.semantic_scores(prompts, 128, heads, use_gate=False)
        full = time.process_time() - t
        t = time.process_time()
        for p in prompts[:50]:
            prompt_semantic.semantic_scores([p], 128, heads)
        single = 1000 * (time.process_time() - t) / min(50, len(prompts))
        print(f"{name:<18} {len(prompts):>7} {tokens / len(prompts):>6.1f} {1000 * gated / len(prompts):>9.2f} "
              f"{1000 * full / len(prompts):>10.2f} {(stage == len(heads)).mean():>8.0%} "
              f"{FLOP_PER_TOKEN[args.encoder] * tokens / full / 1e9:>8.0f} "
              f"{single:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
