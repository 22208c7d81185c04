"""The prompt stage: lexical term lists and the semantic classifier, combined per policy.

The lexical guard (`prompt_lexical`) sees explicit terms through obfuscation and applies the
combination cues (age words, real-person names, the negative prompt). The semantic classifier
(`prompt_semantic`) catches what keyword lists cannot: prompts that never say "nude". Both only
produce findings; `decide()` applies the policy once over all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import prompt_lexical
from .errors import GuardUnavailable
from .policy import Policy, load_policy
from .prompt_normalize import replace_lone_surrogates
from .verdict import Finding, Verdict, decide

STAGE = "prompt"


def check_prompt(prompt: str, negative: str = "", policy: Policy | None = None, *,
                 lexicon: prompt_lexical.Lexicon | None = None) -> Verdict:
    """Check one prompt and its negative prompt.

    Args:
        prompt (`str`): the positive prompt, host syntax included (weights, LoRA tags, wildcards).
        negative (`str`, *optional*): the negative prompt; adult words there are a minor cue.
            ``None`` reads as no negative prompt.
        policy (`Policy`, *optional*, defaults to the ``public`` profile).
        lexicon (`Lexicon`, *optional*): term lists; defaults to the bundled ones plus the host
            lists the policy names in ``[lists]``.

    Returns:
        `Verdict` with stage ``"prompt"``.

    Raises:
        `GuardUnavailable`: the policy requires the semantic classifier and it cannot load.
        `TypeError`: a prompt that is not text (the message names which).

    Example:
        >>> check_prompt("a child flying a kite").action
        <Action.ALLOW: 'allow'>
    """
    return check_prompts([(prompt, negative)], policy, lexicon=lexicon)[0]


def check_prompts(items: Sequence[tuple[str, str]], policy: Policy | None = None, *,
                  lexicon: prompt_lexical.Lexicon | None = None) -> list[Verdict]:
    """Check many (prompt, negative) pairs; the semantic classifier encodes them in batches."""
    items = [_text_pair(item, n) for n, item in enumerate(_pairs(items))]
    policy = policy or load_policy()
    lexicon = lexicon or prompt_lexical.Lexicon.for_policy(policy)
    findings: list[list[Finding]] = [lexicon.prompt_findings(p, n, policy) for p, n in items]
    skipped: dict[str, str] = {}
    mode = policy.section(STAGE)["semantic"]
    if mode != "off":
        from . import prompt_semantic

        try:
            semantic = prompt_semantic.semantic_findings([p for p, _ in items], policy)
        except GuardUnavailable as e:
            if mode == "required":
                raise
            skipped["semantic"] = str(e)
        else:
            for found, extra in zip(findings, semantic):
                found.extend(extra)
    details = {"skipped": skipped} if skipped else None
    return [decide(STAGE, found, policy, details) for found in findings]


def _pairs(items: Any) -> Sequence[Any]:
    if isinstance(items, (str, bytes)):  # a lone prompt would be read one character at a time
        raise TypeError("check_prompts takes a list of (prompt, negative) pairs; for one prompt use check_prompt")
    return list(items)


def _text_pair(item: Any, index: int) -> tuple[str, str]:
    """One (prompt, negative) pair as clean text: a None negative is empty, lone surrogates are
    U+FFFD; anything else that is not text is refused with its place named."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise TypeError(f"item {index}: expected a (prompt, negative) pair, got {type(item).__name__}")
    prompt, negative = item
    if negative is None:
        negative = ""
    for name, value in (("prompt", prompt), ("negative", negative)):
        if not isinstance(value, str):
            hint = " (pass the policy as policy=...)" if isinstance(value, Policy) else ""
            raise TypeError(f"item {index}: {name} must be str, got {type(value).__name__}{hint}")
    return replace_lone_surrogates(prompt), replace_lone_surrogates(negative)
