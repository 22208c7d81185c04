"""`sdguard eval-prompts`: recall and false-positive rate of the prompt stage on labelled sets."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _json
from ..policy import Policy
from ..prompt_normalize import replace_lone_surrogates
from ..verdict import Finding
from ._common import UsageError, add_policy_args, policy_from_args, print_json, read_input
from .prompt import input_lines

if TYPE_CHECKING:
    from ..prompt_semantic import PromptHead

EVAL_DIR_ENV = "SDGUARD_EVAL_DIR"
# The development sets live beside the checkout (../shared/eval) when run from the repository root.
DEFAULT_EVAL_DIR = Path("..", "shared", "eval")
BENIGN = "benign"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-prompts", help="recall / false-positive rate of the prompt stage on labelled JSONL sets",
        description="For each JSON Lines set ({'prompt': ..., 'label': 'sexual' | 'violence' | 'benign'}): "
                    "recall of the labelled category on harmful prompts, share flagged (for any category "
                    "the head scores or the sets label) on benign ones, and the thresholds used. Default sets: "
                    f"${EVAL_DIR_ENV}, else {DEFAULT_EVAL_DIR} (from the current folder). Note that the bundled head was trained on "
                    "part of those sets; its card gives held-out figures.")
    p.add_argument("files", nargs="*", metavar="FILE.jsonl", help="labelled prompt sets")
    p.add_argument("--combined", action="store_true",
                   help="count lexical findings too (the whole prompt stage), not the semantic head alone")
    add_policy_args(p)
    p.add_argument("--json", action="store_true", help="print JSON, one object per set")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = [Path(f) for f in args.files] or _default_sets()
    sets = [(path.stem, _read_set(path)) for path in paths]
    policy = policy_from_args(args)
    # A benign prompt is a false positive when any category the head scores, or any set labels, fires.
    labelled = {label for _, rows in sets for _, label in rows if label != BENIGN}
    harmful = sorted(labelled.union(_last_head(policy).categories))
    results = [evaluate_set(name, rows, policy, harmful, combined=args.combined) for name, rows in sets]
    if args.json:
        for result in results:
            print_json(result)
    else:
        print(f"{'set':<28} {'n':>6}  {'label':<9} {'metric':<10} {'value':>7}  thresholds")
        for r in results:
            shown = ", ".join(f"{c} {t:g}" for c, t in r["thresholds"].items())
            print(f"{r['set']:<28} {r['n']:>6}  {r['label']:<9} {r['metric']:<10} {r['value']:>7.1%}  {shown}")
    return 0


def evaluate_set(name: str, rows: Sequence[tuple[str, str]], policy: Policy, harmful: Sequence[str], *,
                 combined: bool = False) -> dict:
    """Score one set.

    Args:
        name (`str`): shown in the output.
        rows (`Sequence[tuple[str, str]]`): (prompt, label) pairs.
        policy (`Policy`): thresholds in force.
        harmful (`Sequence[str]`): categories a benign prompt must not fire.
        combined (`bool`, *optional*): include lexical findings.

    Returns:
        `dict` with set, n, label (``mixed`` when rows differ), metric (``recall`` on harmful rows,
        ``flagged`` on benign ones, ``accuracy`` on mixed sets), value, and the semantic thresholds.
    """
    from .. import prompt_semantic

    prompts = [p for p, _ in rows]
    findings = prompt_semantic.semantic_findings(prompts, policy)
    if combined:
        from .. import prompt_lexical

        lexicon = prompt_lexical.Lexicon.default()
        findings = [found + lexicon.prompt_findings(p, "", policy) for found, p in zip(findings, prompts)]
    head = _last_head(policy)
    hits = [_correct(found, label, harmful) for found, (_, label) in zip(findings, rows)]
    labels = {label for _, label in rows}
    label = labels.pop() if len(labels) == 1 else "mixed"
    metric = "accuracy" if label == "mixed" else ("flagged" if label == BENIGN else "recall")
    value = sum(hits) / len(hits) if hits else 0.0
    if label == BENIGN:
        value = 1.0 - value
    return {"set": name, "n": len(rows), "label": label, "metric": metric, "value": round(value, 4),
            "combined": combined, "model": head.model,
            "thresholds": {c: policy.threshold(c, head.source, head.thresholds[c])
                           for c in head.categories}}


def _last_head(policy: Policy) -> PromptHead:
    """The head whose thresholds decide under `policy` (MiniLM's, or MPNet's that follows it)."""
    from .. import prompt_semantic

    return prompt_semantic.default_heads(policy.section("prompt")["semantic_encoder"])[-1]


def _correct(found: list[Finding], label: str, harmful: Sequence[str]) -> bool:
    fired = {f.category for f in found if f.fired}
    if label == BENIGN:
        return not fired.intersection(harmful)
    return label in fired


def _default_sets() -> list[Path]:
    folder = Path(os.environ.get(EVAL_DIR_ENV) or DEFAULT_EVAL_DIR)
    paths = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not paths:
        raise UsageError(f"no sets given and no *.jsonl in {folder}; pass FILE.jsonl or set ${EVAL_DIR_ENV}")
    return paths


def _read_set(path: Path) -> list[tuple[str, str]]:
    """Read a whole set up front so a bad line stops the run before anything is printed."""
    try:
        text = read_input(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    rows = []
    for n, line in input_lines(text):
        if not line.strip():
            continue
        try:
            obj = _json.loads(line)
        except ValueError as e:
            raise UsageError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) \
                or not isinstance(obj.get("label"), str):
            raise UsageError(f"{path}:{n}: expected an object with string 'prompt' and 'label'")
        rows.append((replace_lone_surrogates(obj["prompt"]), obj["label"]))
    if not rows:
        raise UsageError(f"{path}: no prompts")
    return rows
