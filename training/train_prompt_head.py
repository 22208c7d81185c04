"""Train the semantic prompt head (sexual, violence) on MiniLM embeddings; write weights + card.

Reproducible on CPU in a few minutes (fixed seeds; embeddings are cached between runs):

    python training/make_prompt_data.py          # the synthetic sets in training/data/
    python training/train_prompt_head.py --leave-out   # → weights/prompt_head.safetensors + .md
    python training/train_prompt_head.py --encoder mpnet --leave-out   # → prompt_head_mpnet.*

`--encoder mpnet` trains the second stage (`[prompt] semantic_encoder = "mpnet"`): the same MLP
on all-mpnet-base-v2 embeddings (embedding the sets takes ~15 min on 2 cores the first time). It
reads only the prompts the MiniLM head (retrained here exactly as above) scores at or over its
escalation thresholds, which pass `--escalate-fp` of the calibration captions; its own thresholds
flag `--fp-target` of the calibration captions as the MiniLM head's do: before the gates, which
only remove flags. (Calibrated after them, with few captions escalated, the thresholds fell to
0.08 / 0.02 and the clean twins and SD-style prompts were flagged up to twice as often.)

Data: every JSONL set in the eval folder (../shared/eval beside the checkout, or --eval-dir) and training/data/.
Each set is split by a seeded shuffle into train / calibration / test parts, so every figure in
the card is measured on prompts the head never saw. `--holdout-set NAME` keeps a whole set out of
training; `--leave-out` retrains without each of LEAVE_OUT_GROUPS in turn and adds those figures to
the card (the honest estimate for a kind of prompt seen nowhere else).
Thresholds: per category, the score that flags `--fp-target` of the calibration part of the
ordinary-caption sets (CAPTION_SETS); recall is then reported at that threshold.
Gate: a second head of the same shape on the encoder's bag of input word embeddings, trained on
the same prompts; its thresholds flag `--gate-fp` of the calibration captions, and a prompt it does
not flag is cleared without the encoder. Every figure is of the gate and the head together.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdguard.prompt_semantic import ENCODERS, FOLLOW_HEAD_FILE, HEAD_FILE, gate_passes, head_scores, save_head
from sdguard.text_encoder import load_encoder

REPO = Path(__file__).resolve().parent.parent

SEED = 1234
CATEGORIES = ("sexual", "violence")
DEFAULT_EVAL_DIR = REPO.parent / "shared" / "eval"  # ../shared/eval beside the checkout
DATA_DIR = REPO / "training" / "data"
# Ordinary captions: thresholds are calibrated to a false-positive rate on these.
CAPTION_SETS = ("benign_coco10k", "benign_parti", "benign_animals")
# Fractions (train, calibration); the rest is test. Caption sets feed calibration, others do not.
SPLIT_CAPTIONS = (0.4, 0.3)
SPLIT_OTHER = (0.6, 0.0)
# Leave-one-group-out checks: how the head fares on a kind of prompt it never saw.
LEAVE_OUT_GROUPS = (("nudity_sixcd",), ("harm_sixcd",), ("benign_sixcd",),
                    ("sexual_artistic", "benign_artistic_twins"), ("sexual_booru", "benign_booru_twins"),
                    ("sexual_crude", "benign_crude_twins"), ("sexual_soup", "benign_soup_twins"))
MAX_TOKENS = 128
# 0.7 %, not the 1 % target: the tail is noisy (calibrating to 1.0 % of the calibration captions
# flagged 1.4 % of the test captions), and the target is 1 % on captions nobody here has seen.
DEFAULT_FP_TARGET = 0.007
# 10 %: the encoder then skips ~80 % of ordinary captions, and the gate costs at most 1 point of
# recall on any set, left out or not (the card's figures include that loss).
DEFAULT_GATE_FP = 0.1
# 5 %: MPNet then reads ~8 % of ordinary captions (those the gate and the MiniLM head pass), which
# keeps the stage within 5 ms a prompt on one core; measured on the development sets, passing 100 %
# instead gained no recall on I2P, MMA or P4D prompts (3 % lost 2-3 points on MMA and UnlearnDiff).
DEFAULT_ESCALATE_FP = 0.05
ENCODER_NAMES = {short: name for name, short in ENCODERS.items()}  # "mpnet" → its hub name
HIDDEN = 64
ENSEMBLE = 5
EPOCHS = 400
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-3
# Clean twins differ from their harmful prompt in one slot: the hardest negatives, so they weigh
# triple (measured: twins flagged 16 % → 10 % for 82 % → 79 % recall on the artistic test part).
# Not the soup twins: real jailbreak sets are all harmful, and weighing benign soup up cost
# recall on Six-CD's MMA-style soups.
SET_WEIGHTS = {"benign_artistic_twins": 3.0, "benign_booru_twins": 3.0, "benign_crude_twins": 3.0,
               "benign_violence_twins": 3.0}
HEAD_NAME = "sdguard-prompt-head"
HEAD_VERSION = "3"
FOLLOW_NAME = "sdguard-prompt-head-mpnet"
FOLLOW_VERSION = "1"


@dataclass
class PromptSet:
    name: str
    prompts: list[str]
    labels: np.ndarray  # (n, len(CATEGORIES)) of 0/1
    part: np.ndarray  # (n,) 0 train, 1 calibration, 2 test


def load_sets(folders: list[Path]) -> list[PromptSet]:
    sets = []
    for folder in folders:
        for path in sorted(folder.glob("*.jsonl")):
            rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
            prompts = list(dict.fromkeys(r["prompt"] for r in rows))
            label_of = {r["prompt"]: r["label"] for r in rows}
            labels = np.array([[label_of[p] == c for c in CATEGORIES] for p in prompts], dtype=np.float32)
            train, calib = SPLIT_CAPTIONS if path.stem in CAPTION_SETS else SPLIT_OTHER
            rng = random.Random(f"{SEED}:{path.stem}")
            order = list(range(len(prompts)))
            rng.shuffle(order)
            part = np.full(len(prompts), 2, dtype=np.int8)
            part[order[:int(train * len(order))]] = 0
            part[order[int(train * len(order)):int((train + calib) * len(order))]] = 1
            sets.append(PromptSet(path.stem, prompts, labels, part))
    return sets


def bags(prompts: list[str]) -> np.ndarray:
    """The gate's input: the encoder's bag of input word embeddings (NFKC as at run time)."""
    return load_encoder().bag_of_words([unicodedata.normalize("NFKC", p) for p in prompts], MAX_TOKENS)


def embed(prompts: list[str], cache_dir: Path, encoder: str = "minilm") -> np.ndarray:
    """Embed with a shipped encoder, caching vectors by prompt hash (the encoder is the slow part)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{encoder}-{MAX_TOKENS}.npz"
    cache: dict[str, np.ndarray] = {}
    if path.is_file():
        with np.load(path) as stored:
            cache = dict(zip(stored["keys"].tolist(), stored["vectors"]))
    # NFKC as at run time (prompt_semantic.semantic_scores), so training sees what the guard sees.
    prompts = [unicodedata.normalize("NFKC", p) for p in prompts]
    keys = [hashlib.sha1(f"{MAX_TOKENS}\x00{p}".encode()).hexdigest() for p in prompts]
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        print(f"embedding {len(todo)} prompts (cached: {len(prompts) - len(todo)})", file=sys.stderr)
        vectors = load_encoder(encoder).encode([prompts[i] for i in todo], MAX_TOKENS)
        cache.update({keys[i]: v for i, v in zip(todo, vectors)})
        # Written beside and renamed: a second training run reading the cache meanwhile must see
        # the old file or the new one, never half of one (np.savez is not atomic). Two runs
        # writing at once keep the last one's vectors; the others are recomputed when needed.
        handle, partial = tempfile.mkstemp(dir=cache_dir, prefix=f".{path.stem}.", suffix=".npz")
        os.close(handle)
        try:
            np.savez(partial, keys=np.array(list(cache)), vectors=np.stack(list(cache.values())))
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return np.stack([cache[k] for k in keys])


def train_head(x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> dict[str, np.ndarray]:
    """`ENSEMBLE` MLPs (different seeds) merged into one: their hidden units side by side and their
    logits averaged, which is again a 1-hidden-layer MLP. Averaging calms the score tails on
    benign prompts, so the same false-positive rate leaves a lower threshold.

    The members train together as one batched model whose loss is the sum of theirs; AdamW works
    per element, so each member trains exactly as it would alone (one big matmul is just faster).
    Each member: `HIDDEN` ReLU units, a sigmoid per category, full-batch AdamW on weighted BCE.

    Args:
        x (`np.ndarray`): (n, dim) embeddings.
        y (`np.ndarray`): (n, categories) 0/1 targets.
        weight (`np.ndarray`): (n,) per-prompt weight (see `set_weights`).
    """
    import torch

    w1, b1, w2, b2 = [], [], [], []
    for k in range(ENSEMBLE):  # the same initialisation a lone member with this seed gets
        torch.manual_seed(SEED + k)
        first, last = torch.nn.Linear(x.shape[1], HIDDEN), torch.nn.Linear(HIDDEN, y.shape[1])
        w1.append(first.weight.detach().T)
        b1.append(first.bias.detach())
        w2.append(last.weight.detach().T)
        b2.append(last.bias.detach())
    params = [torch.cat(w1, dim=1).requires_grad_(), torch.cat(b1).requires_grad_(),
              torch.stack(w2).requires_grad_(), torch.stack(b2).requires_grad_()]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    wt = torch.from_numpy(weight.astype(np.float32))[:, None]
    opt = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    for _ in range(EPOCHS):
        opt.zero_grad()
        hidden = torch.relu(xt @ params[0] + params[1]).view(len(xt), ENSEMBLE, HIDDEN)
        logits = torch.einsum("neh,ehc->nec", hidden, params[2]) + params[3]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, yt[:, None, :].expand_as(logits), weight=wt[:, :, None], reduction="none")
        (loss.mean(dim=(0, 2)).sum()).backward()
        opt.step()
    return {"hidden.weight": params[0].detach().numpy().copy(),
            "hidden.bias": params[1].detach().numpy().copy(),
            "out.weight": params[2].detach().reshape(ENSEMBLE * HIDDEN, -1).numpy() / ENSEMBLE,
            "out.bias": params[3].detach().mean(dim=0).numpy()}


def set_weights(sets: list[PromptSet]) -> np.ndarray:
    """Every set's training part weighs the same in total (mean weight 1), so 4,000 COCO captions
    do not drown 400 clean twins, and positives are not a minority; a set named in `SET_WEIGHTS`
    weighs that many times as much."""
    sizes = [int((s.part == 0).sum()) for s in sets]
    used = [(n, SET_WEIGHTS.get(s.name, 1.0)) for n, s in zip(sizes, sets) if n]
    total, shares = sum(n for n, _ in used), sum(w for _, w in used)
    return np.concatenate([np.full(n, total * w / (shares * n), dtype=np.float32) for n, w in used])


def calibrate(scores: np.ndarray, fp_target: float) -> float:
    """The lowest threshold that flags at most `fp_target` of benign `scores` (flag: score ≥ t)."""
    ranked = np.sort(scores)[::-1]
    allowed = int(np.floor(fp_target * len(ranked)))
    # Just above the (allowed+1)-th highest benign score, so exactly `allowed` stay at or above it.
    return float(np.nextafter(ranked[allowed], np.float32(1.0))) if allowed < len(ranked) else 0.0


def evaluate(sets: list[PromptSet], scores: dict[str, np.ndarray], thresholds: dict[str, float],
             encoded: dict[str, np.ndarray], part: int) -> list[dict]:
    """Per set: recall on its harmful category, or the share of benign prompts flagged; and the
    share the gate passed to the encoder. A prompt the gate cleared is never flagged."""
    rows = []
    for s in sets:
        mask = s.part == part
        if not mask.any():
            continue
        sc, lab, read = scores[s.name][mask], s.labels[mask], encoded[s.name][mask]
        flags = np.stack([(sc[:, i] >= thresholds[c]) & read for i, c in enumerate(CATEGORIES)], axis=1)
        harmful = lab.any(axis=1)
        row = {"set": s.name, "n": int(mask.sum()), "encoded": float(read.mean())}
        if harmful.all():
            i = int(lab[0].argmax())
            row.update(category=CATEGORIES[i], metric="recall", value=float(flags[:, i].mean()),
                       any_flag=float(flags.any(axis=1).mean()))
        else:
            row.update(category="any", metric="flagged", value=float(flags.any(axis=1).mean()),
                       **{f"flagged_{c}": float(flags[:, i].mean()) for i, c in enumerate(CATEGORIES)})
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=DEFAULT_EVAL_DIR)
    ap.add_argument("--fp-target", type=float, default=DEFAULT_FP_TARGET, help="false-positive rate on captions")
    ap.add_argument("--gate-fp", type=float, default=DEFAULT_GATE_FP,
                    help="share of captions the gate passes to the encoder")
    ap.add_argument("--holdout-set", action="append", default=[], help="keep this whole set out of training")
    ap.add_argument("--leave-out", action="store_true",
                    help="also retrain without each of LEAVE_OUT_GROUPS and report how those sets fare")
    ap.add_argument("--encoder", choices=sorted(ENCODER_NAMES), default="minilm",
                    help="minilm: the first head and its gate; mpnet: the head that follows it")
    ap.add_argument("--escalate-fp", type=float, default=DEFAULT_ESCALATE_FP,
                    help="share of captions the MiniLM head passes to the MPNet head (--encoder mpnet)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sdguard-train")
    ap.add_argument("--out", type=Path, default=REPO / "weights",
                    help="folder for prompt_head.safetensors and prompt_head.md ('-' writes nothing)")
    args = ap.parse_args(argv)

    sets = load_sets([args.eval_dir, DATA_DIR])
    vectors = {s.name: embed(s.prompts, args.cache) for s in sets}
    bag_vectors = {s.name: bags(s.prompts) for s in sets}
    if args.encoder == "mpnet":
        return main_follow(args, sets, vectors, bag_vectors)
    (params, thresholds), (gate, gate_thresholds), rows = fit(
        sets, vectors, bag_vectors, args.fp_target, args.gate_fp, args.holdout_set)
    report = {"thresholds": thresholds, "fp_target": args.fp_target, "holdout_sets": args.holdout_set,
              "gate_thresholds": gate_thresholds, "gate_fp": args.gate_fp,
              "train_prompts": int(sum((s.part == 0).sum() for s in sets if s.name not in args.holdout_set)),
              "calibration_captions": int(sum((s.part == 1).sum() for s in sets if s.name in CAPTION_SETS)),
              "test": rows, "leave_out": []}
    if args.leave_out:
        for group in LEAVE_OUT_GROUPS:
            (_, th), _, out = fit(sets, vectors, bag_vectors, args.fp_target, args.gate_fp,
                                  [*args.holdout_set, *group])
            report["leave_out"].append({"left_out": list(group), "thresholds": th,
                                        "test": [r for r in out if r["set"] in group]})
    print(json.dumps(report, indent=1))
    if str(args.out) != "-":
        write_outputs(args.out, params, gate, report, sets)
    return 0


Head = tuple[dict[str, np.ndarray], dict[str, float]]  # parameters, thresholds per category


def main_follow(args: argparse.Namespace, sets: list[PromptSet], vectors: dict[str, np.ndarray],
                bag_vectors: dict[str, np.ndarray]) -> int:
    """`--encoder mpnet`: train, report and write the head that follows the MiniLM head."""
    follow_vectors = {s.name: embed(s.prompts, args.cache, "mpnet") for s in sets}
    (params, thresholds, escalate), rows = fit_follow(sets, vectors, bag_vectors, follow_vectors, args.fp_target,
                                                      args.gate_fp, args.escalate_fp, args.holdout_set)
    report = {"thresholds": thresholds, "fp_target": args.fp_target, "escalate_thresholds": escalate,
              "escalate_fp": args.escalate_fp, "holdout_sets": args.holdout_set,
              "train_prompts": int(sum((s.part == 0).sum() for s in sets if s.name not in args.holdout_set)),
              "calibration_captions": int(sum((s.part == 1).sum() for s in sets if s.name in CAPTION_SETS)),
              "test": rows, "leave_out": []}
    if args.leave_out:
        for group in LEAVE_OUT_GROUPS:
            (_, th, _), out = fit_follow(sets, vectors, bag_vectors, follow_vectors, args.fp_target, args.gate_fp,
                                         args.escalate_fp, [*args.holdout_set, *group])
            report["leave_out"].append({"left_out": list(group), "thresholds": th,
                                        "test": [r for r in out if r["set"] in group]})
    print(json.dumps(report, indent=1))
    if str(args.out) != "-":
        metadata = {"name": FOLLOW_NAME, "version": FOLLOW_VERSION, "categories": ",".join(CATEGORIES),
                    "encoder": ENCODER_NAMES["mpnet"], "max_tokens": str(MAX_TOKENS),
                    "follows": f"{HEAD_NAME}@{HEAD_VERSION}",
                    "thresholds": json.dumps(thresholds), "fp_target": str(args.fp_target),
                    "gate_thresholds": json.dumps(escalate), "gate_fp": str(args.escalate_fp),
                    "trained": datetime.date.today().isoformat()}
        save_head(args.out / FOLLOW_HEAD_FILE, params, None, metadata)
        (args.out / FOLLOW_HEAD_FILE).with_suffix(".md").write_text(follow_card(metadata, report, sets), "utf-8")
        print(f"wrote {args.out / FOLLOW_HEAD_FILE} and its card", file=sys.stderr)
    return 0


def fit_follow(sets: list[PromptSet], vectors: dict[str, np.ndarray], bag_vectors: dict[str, np.ndarray],
               follow_vectors: dict[str, np.ndarray], fp_target: float, gate_fp: float, escalate_fp: float,
               holdout: list[str]) -> tuple[tuple[dict[str, np.ndarray], dict[str, float], dict[str, float]], list[dict]]:
    """The MiniLM head and gate exactly as `fit` trains them (without `holdout`), then the MPNet
    head on the same training parts. Escalation thresholds: the MiniLM head's scores that pass
    `escalate_fp` of the calibration captions. MPNet thresholds: `fp_target` of the calibration
    captions' MPNet scores, before the gates. Returns (params, thresholds, escalation thresholds)
    and the test rows of the whole chain (``encoded``: the share MPNet read)."""
    parts = {s.name: np.full_like(s.part, 2) if s.name in holdout else s.part for s in sets}
    used = [PromptSet(s.name, s.prompts, s.labels, parts[s.name]) for s in sets]
    (_, _), first_scores = _fit_one(used, vectors, fp_target)
    (_, gate_thresholds), gate_scores = _fit_one(used, bag_vectors, gate_fp)
    calib = np.concatenate([first_scores[s.name][s.part == 1] for s in used if s.name in CAPTION_SETS])
    escalate = {c: round(calibrate(calib[:, i], escalate_fp), 4) for i, c in enumerate(CATEGORIES)}
    reach = {s.name: gate_passes(gate_scores[s.name], [gate_thresholds[c] for c in CATEGORIES])
             & gate_passes(first_scores[s.name], [escalate[c] for c in CATEGORIES]) for s in used}
    (params, thresholds), scores = _fit_one(used, follow_vectors, fp_target)
    return (params, thresholds, escalate), evaluate(used, scores, thresholds, reach, part=2)


def follow_card(meta: dict[str, str], report: dict, sets: list[PromptSet]) -> str:
    """The MPNet head's model card: what it is, how it is chained, its held-out figures."""
    lines = [f"# {meta['name']} v{meta['version']}", "",
             "Second stage of sdguard's semantic prompt classifier, used when a policy sets "
             "`[prompt] semantic_encoder = \"mpnet\"`: the same MLP shape as the MiniLM head "
             f"({ENSEMBLE} × {HIDDEN} ReLU units, one sigmoid per category: {meta['categories']}) on "
             f"{meta['encoder']} sentence embeddings (mean-pooled, L2-normalised, first {meta['max_tokens']} tokens).", "",
             f"- Trained: {meta['trained']} by `training/train_prompt_head.py --encoder mpnet`, on the same "
             f"prompts, parts, seeds, set weights and epochs as {meta['follows']} (its card: `prompt_head.md`; "
             f"{report['train_prompts']} training prompts).",
             f"- Chain: {meta['follows']}'s gate clears what it clears; of the rest, a prompt whose MiniLM "
             f"head scores are all below the escalation thresholds "
             f"{', '.join(f'{c} {t}' for c, t in report['escalate_thresholds'].items())} is cleared (they "
             f"pass {report['escalate_fp']:.0%} of the calibration captions); every other prompt is "
             "embedded with MPNet and this head decides it. The MiniLM head's own thresholds play no part.",
             f"- Thresholds (score ≥ t flags): {', '.join(f'{c} {t}' for c, t in report['thresholds'].items())}. "
             f"Each flags {report['fp_target']:.1%} of {report['calibration_captions']} held-out calibration "
             f"captions ({', '.join(CAPTION_SETS)}), calibrated before the gates, which only remove flags. "
             "Policies override them (`[categories.<name>] thresholds.semantic_mpnet`).",
             "- Weights of the encoder: user-fetched (`weights/MANIFEST.toml`: all_mpnet_base_v2, "
             "revision e8c3b32 of sentence-transformers/all-mpnet-base-v2, Apache-2.0).", "",
             "## Held-out test figures", ""]
    lines += _figure_tables(report, "The whole chain on the test part of each set (data: `prompt_head.md`). Harmful "
                            "sets: recall of their category. Benign sets: share flagged for any category. "
                            "`encoded`: share MPNet read.",
                            "Both heads and the gate retrained without a group of sets (all thresholds "
                            "recalibrated), then measured on all of that group.")
    lines += ["", "Public sets (not trained on): `sdguard eval-prompts` with a policy setting "
              "`semantic_encoder = \"mpnet\"`; figures in the README.", ""]
    return "\n".join(lines)


def fit(sets: list[PromptSet], vectors: dict[str, np.ndarray], bag_vectors: dict[str, np.ndarray],
        fp_target: float, gate_fp: float, holdout: list[str]) -> tuple[Head, Head, list[dict]]:
    """Train the head and the gate on the train parts (minus `holdout` sets), calibrate both, and
    score the test parts (all of a held-out set). Returns the head, the gate and the test rows."""
    parts = {s.name: np.full_like(s.part, 2) if s.name in holdout else s.part for s in sets}
    used = [PromptSet(s.name, s.prompts, s.labels, parts[s.name]) for s in sets]
    head, scores = _fit_one(used, vectors, fp_target)
    gate, gate_scores = _fit_one(used, bag_vectors, gate_fp)
    encoded = {name: gate_passes(sc, [gate[1][c] for c in CATEGORIES]) for name, sc in gate_scores.items()}
    return head, gate, evaluate(used, scores, head[1], encoded, part=2)


def _fit_one(sets: list[PromptSet], vectors: dict[str, np.ndarray], fp_target: float
             ) -> tuple[Head, dict[str, np.ndarray]]:
    """A head on `vectors` and its thresholds at `fp_target` of the calibration captions; and its scores per set."""
    x = np.concatenate([vectors[s.name][s.part == 0] for s in sets])
    y = np.concatenate([s.labels[s.part == 0] for s in sets])
    params = train_head(x, y, set_weights(sets))
    scores = {s.name: head_scores(params, vectors[s.name]) for s in sets}
    calib = np.concatenate([scores[s.name][s.part == 1] for s in sets if s.name in CAPTION_SETS])
    thresholds = {c: round(calibrate(calib[:, i], fp_target), 4) for i, c in enumerate(CATEGORIES)}
    return (params, thresholds), scores


def write_outputs(out: Path, params: dict[str, np.ndarray], gate: dict[str, np.ndarray], report: dict,
                  sets: list[PromptSet]) -> None:
    metadata = {"name": HEAD_NAME, "version": HEAD_VERSION, "categories": ",".join(CATEGORIES),
                "encoder": ENCODER_NAMES["minilm"], "max_tokens": str(MAX_TOKENS),
                "thresholds": json.dumps(report["thresholds"]), "fp_target": str(report["fp_target"]),
                "gate_thresholds": json.dumps(report["gate_thresholds"]), "gate_fp": str(report["gate_fp"]),
                "trained": datetime.date.today().isoformat()}
    save_head(out / HEAD_FILE, params, gate, metadata)
    (out / HEAD_FILE).with_suffix(".md").write_text(model_card(metadata, report, sets), "utf-8")
    print(f"wrote {out / HEAD_FILE} and its card", file=sys.stderr)


# v2's honest figures (its card: the same head without a gate).
PREVIOUS_FIGURES = {("nudity_sixcd", "leave_out"): 0.891, ("harm_sixcd", "leave_out"): 0.271,
                    ("benign_sixcd", "leave_out"): 0.139, ("benign_sixcd", "test"): 0.095,
                    ("benign_coco10k", "test"): 0.016}


def _compare_previous(report: dict) -> str:
    """One sentence: v2's honest figures beside this run's."""
    now = {(r["set"], "test"): r["value"] for r in report["test"]}
    now.update({(r["set"], "leave_out"): r["value"] for item in report["leave_out"] for r in item["test"]})
    words = {"leave_out": "left out", "test": "test part"}
    return "; ".join(f"{name} ({words[kind]}) {old:.1%} → {now[name, kind]:.1%}"
                     for (name, kind), old in PREVIOUS_FIGURES.items() if (name, kind) in now) + \
        " (recall for harmful sets, share flagged for any category for benign ones)."


def _cells(row: dict) -> str:
    """A report row's metric, value, per-category flags and encoded share as table cells."""
    per = [f"{row[f'flagged_{c}']:.1%}" if f"flagged_{c}" in row else "" for c in CATEGORIES]
    return " | ".join([f"{row['metric']} ({row['category']})", f"{row['value']:.1%}", *per, f"{row['encoded']:.0%}"])


def _figure_tables(report: dict, test_intro: str, leave_out_intro: str) -> list[str]:
    """A card's test table, and its leave-one-group-out table when the report has one."""
    header = "| metric | value | flagged sexual | flagged violence | encoded |"
    lines = [test_intro, "", "| set | n " + header, "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['set']} | {row['n']} | {_cells(row)} |" for row in report["test"]]
    if report["leave_out"]:
        lines += ["", "## Leave-one-group-out", "", leave_out_intro, "", "| left out | set " + header,
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {' + '.join(item['left_out'])} | {row['set']} | {_cells(row)} |"
                  for item in report["leave_out"] for row in item["test"]]
    return lines


def model_card(meta: dict[str, str], report: dict, sets: list[PromptSet]) -> str:
    lines = [f"# {meta['name']} v{meta['version']}", "",
             "Semantic prompt classifier of sdguard's prompt stage: a 1-hidden-layer MLP "
             f"({ENSEMBLE} × {HIDDEN} ReLU units: {ENSEMBLE} seeds merged, logits averaged; one sigmoid "
             f"per category: {meta['categories']}) on "
             f"{meta['encoder']} sentence embeddings (mean-pooled, L2-normalised, first "
             f"{meta['max_tokens']} tokens).", "",
             f"- Trained: {meta['trained']} by `training/train_prompt_head.py` (seeds {SEED}..{SEED + ENSEMBLE - 1}, "
             f"{EPOCHS} full-batch AdamW epochs, BCE with every set weighing the same except "
             + ", ".join(f"{name} {w:g}×" for name, w in SET_WEIGHTS.items())
             + f"), {report['train_prompts']} training prompts.",
             f"- Thresholds (score ≥ t flags): {', '.join(f'{c} {t}' for c, t in report['thresholds'].items())}. "
             f"Each flags {report['fp_target']:.1%} of {report['calibration_captions']} held-out calibration "
             f"captions ({', '.join(CAPTION_SETS)}). Stored in this file's metadata; policies override them "
             "(`[categories.<name>] thresholds.semantic`).",
             f"- Gate: the same MLP shape on the mean of the encoder's input word embeddings (no "
             f"transformer layer, ~1 % of its cost). Gate thresholds "
             f"{', '.join(f'{c} {t}' for c, t in report['gate_thresholds'].items())} flag "
             f"{report['gate_fp']:.0%} of the calibration captions; a prompt under all of them is cleared "
             "without the encoder (its findings carry the gate's score). Every figure below is of gate and "
             "head together; the `encoded` column is the share of prompts the encoder read. A policy that "
             "lowers a semantic threshold turns the gate off.",
             "- Scores are sigmoid outputs of a set-balanced head: ordered and probability-like, not "
             "calibrated probabilities. Compare them with the threshold only.", "",
             "## Training data", "",
             "| set | prompts | train | calibration | test |", "|---|---|---|---|---|"]
    for s in sets:
        lines.append(f"| {s.name} | {len(s.prompts)} | {(s.part == 0).sum()} | {(s.part == 1).sum()} | "
                     f"{(s.part == 2).sum()} |")
    lines += ["", "Eval sets: ../shared/eval (Six-CD nudity/harm/benign, COCO captions, PartiPrompts, "
              "animal captions; see its README for sources and licences). `training/data/`: synthetic sets "
              "written by `training/make_prompt_data.py` (word lists in `training/prompt_vocab.py`). Each "
              "harmful synthetic prompt has a clean twin built from the same template and slot values, "
              "differing only in the harmful slot (nudity → named clothing, sex act → harmless act, gore → "
              "harmless act): I2P/Lexica-style artist-driven nudity (sexual_artistic), Civitai/booru tag "
              "prompts (sexual_booru), crude forum-style sentences about sex (sexual_crude), adversarial "
              "token soup made by perturbing those three kinds (broken, glued and misspelt words, leetspeak, `<|startoftext|>`, euphemisms, "
              "nudity words in 30 languages; the twins perturbed identically), gore and hate speech "
              "wishing groups harm (violence_written). Benign extras: SD-style prompts with clothed "
              "people, LAION-style art titles and shop captions, captions with keyword-trap words.", "",
              "## Changes from v2", "",
              "- The gate is new; the head is retrained from v2's data and seeds (thresholds moved by < 0.002). The gate skips the "
              "encoder on most ordinary prompts and, since a prompt must now pass both, flags fewer benign ones.",
              "- v2 (over v1): clean twins for every harmful synthetic prompt (weighing 3×), booru/Civitai, "
              "crude-sentence, hate-speech and perturbed-soup sets, thresholds at 0.7 % of the calibration "
              "captions (at 1 % the test captions were flagged 1.4 %).",
              f"- Honest figures, v2 → v{meta['version']}: " + _compare_previous(report), "",
              "## Held-out test figures", ""]
    lines += _figure_tables(report, "Measured on the test part of each set, at the thresholds above. Harmful sets: "
                            "recall of their category. Benign sets: share flagged for any category.",
                            "The head retrained without a group of sets (thresholds recalibrated), then measured "
                            "on all of that group: the honest estimate for a kind of prompt seen nowhere in training.")
    lines += ["", "Synthetic sets share templates and word lists between their train and test parts, so "
              "their held-out figures are optimistic; when a synthetic family is left out, the other "
              "families still share its word lists. The Six-CD and caption figures are the ones to trust. "
              "The public sets sdguard targets (real I2P prompts, Ring-A-Bell/MMA token soup, paired clean "
              "twins) are not trained on, except the MMA-Diffusion soup that Six-CD bundles; "
              "`training/public_sets.py` drops what was seen and makes the rest into sets for "
              "`sdguard eval-prompts` (figures in the README).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
