"""Benchmark the semantic prompt classifier: load time and ms per prompt on ONE CPU core.

    python benchmarks/bench_prompt_semantic.py [--threads 1] [--sets DIR]

Prompts come from the eval sets when present (short COCO captions, long Six-CD nudity prompts),
else from seeded synthetic prompts of caption-like and SD-prompt-like lengths. Batch mode is how
`check-prompt --input` and `eval-prompts` run; "single" is one prompt per call (a host's generate
button). Reported next to the cost it adds to: one SD 1.5 sampling step is ~50-100 ms on a GPU.
Per-prompt figures are process CPU time (one BLAS thread, so that is one core's work): on a shared
machine wall time also counts the time other processes hold the core.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

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
    ap.add_argument("--sets", type=Path, default=Path("/work/shared/eval"))
    ap.add_argument("-n", type=int, default=400, help="prompts per set")
    args = ap.parse_args()
    _set_threads(args.threads)
    import numpy as np

    from sdguard import prompt_semantic
    from sdguard.text_encoder import load_encoder

    t0 = time.perf_counter()
    encoder = load_encoder()
    t1 = time.perf_counter()
    head = prompt_semantic.default_head()
    t2 = time.perf_counter()
    print(f"load: encoder {t1 - t0:.2f} s, head {1000 * (t2 - t1):.1f} ms  (threads={args.threads}, numpy {np.__version__})")

    rng = random.Random(0)
    sets = [_prompts(args.sets, "benign_coco10k", args.n, 12, rng),
            _prompts(args.sets, "nudity_sixcd", args.n, 45, rng)]
    prompt_semantic.semantic_scores(["warm-up"], 128, head)
    print(f"{'set':<18} {'max_tokens':>10} {'mean tokens':>11} {'batch CPU ms/prompt':>20} {'single CPU ms':>14}")
    for name, prompts in sets:
        for max_tokens in (128, 64):
            tokens = np.mean([len(ids) for ids in encoder.tokenize(prompts, max_tokens)])
            t = time.process_time()
            prompt_semantic.semantic_scores(prompts, max_tokens, head)
            batch = 1000 * (time.process_time() - t) / len(prompts)
            t = time.process_time()
            for p in prompts[:50]:
                prompt_semantic.semantic_scores([p], max_tokens, head)
            single = 1000 * (time.process_time() - t) / min(50, len(prompts))
            print(f"{name:<18} {max_tokens:>10} {tokens:>11.1f} {batch:>20.2f} {single:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
