"""`sdguard check-prompt`: the prompt stage from the command line."""

from __future__ import annotations

import argparse
import re
import sys

from .. import _json
from ..audit import hash_input, prompt_text_to_store
from ..prompt_guard import check_prompts
from ..prompt_normalize import replace_lone_surrogates
from ._common import (UsageError, add_audit_arg, add_policy_args, audit_from_args, exit_status,
                      policy_from_args, print_json, read_input)


JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
# Keys a JSON Lines record may hold its negative prompt under (A1111 writes "negative_prompt").
NEGATIVE_KEYS = ("negative", "negative_prompt")
# How every JSON object with a key begins: "{", JSON whitespace, then the key's quote. A plain-text
# prompt may start with "{" ("{red|blue} bird", wildcard syntax); "{}" holds no prompt to hide.
JSON_OBJECT_START_RE = re.compile(r'\{[ \t\r\n]*"')


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-prompt", help="check prompts (and negative prompts) against the policy",
                       description="Check a prompt, or a file of prompts, against the policy.")
    p.add_argument("text", nargs="?", help="the prompt (omit with --input)")
    p.add_argument("--negative", default="", help="the negative prompt")
    p.add_argument("--input", metavar="FILE",
                   help="JSON Lines with 'prompt' (and optional 'negative'; *.jsonl, or a first line starting "
                        "with '{' and a key), or plain text with one prompt per line ('-' for stdin); output is one "
                        "JSON object per prompt, in order")
    add_policy_args(p)
    add_audit_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.input is None):
        raise UsageError("give either a prompt or --input FILE")
    if args.input is not None and args.negative:
        raise UsageError("--negative applies to a single prompt; put 'negative' in the JSON Lines input")
    items = read_prompts(args.input) if args.input is not None else [(args.text, args.negative)]
    # As check_prompts reads them; the audit trail hashes and stores the same text.
    items = [(replace_lone_surrogates(p), replace_lone_surrogates(n)) for p, n in items]
    policy = policy_from_args(args)
    verdicts = check_prompts(items, policy)
    log = audit_from_args(args, policy)
    for (prompt, negative), verdict in zip(items, verdicts):
        if log is not None:
            log.record(verdict, input_hash=hash_input(prompt + "\x00" + negative),
                       host=policy.section("audit")["host"], text=prompt_text_to_store(policy, verdict, prompt))
    if args.input is not None or args.json:
        for verdict in verdicts:
            print_json(verdict.to_dict())
    else:
        verdict = verdicts[0]
        print(verdict.action.value.upper())
        for reason in verdict.to_dict()["reasons"]:
            print(f"  {reason}")
    return exit_status(verdicts)


def input_lines(text: str) -> list[tuple[int, str]]:
    """The numbered lines of an input file, split at "\\n" only (a "\\r" before it goes).

    Not `str.splitlines`: it also splits at U+2028, U+2029, U+0085, \\v, \\f and \\x1c-\\x1e, so one
    prompt would become several, each checked alone ("loli<U+2028>nude" as two harmless halves),
    and a JSON line holding one of them raw (valid JSON) would be refused.
    """
    return [(n, line[:-1] if line.endswith("\r") else line)
            for n, line in enumerate(text.split("\n"), 1)]


def read_prompts(source: str) -> list[tuple[str, str]]:
    """Read the whole input before checking anything, so bad input writes nothing.

    JSON Lines when the file is named ``*.jsonl`` / ``*.ndjson`` or its first non-blank line starts
    with ``{"`` (JSON whitespace allowed between them): then every line must be an object with a
    string 'prompt', or nothing is checked (a broken line must not be read as a harmless prompt,
    as JSON escapes would go unread).
    Otherwise plain text, one prompt per line. Blank lines are skipped; no prompt at all is an error.
    """
    try:
        raw = sys.stdin.buffer.read() if source == "-" else read_input(source)
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageError(f"{source}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UsageError(f"{source}: cannot read ({e.strerror})") from None
    lines = [(n, line) for n, line in input_lines(text) if line.strip()]
    if not lines:  # exit 0 with no verdicts would read as "all clean" to a script
        raise UsageError(f"{source}: no prompts")
    json_lines = source.lower().endswith(JSON_LINES_SUFFIXES) or JSON_OBJECT_START_RE.match(lines[0][1].lstrip())
    if not json_lines:
        return [(line, "") for _, line in lines]
    items = []
    for n, line in lines:
        try:
            obj = _json.loads(line)
        except ValueError as e:
            raise UsageError(f"{source}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise UsageError(f"{source}:{n}: expected an object with a string 'prompt'")
        keys = [key for key in NEGATIVE_KEYS if key in obj]
        if len(keys) > 1:  # which one counts would be a guess; a wrong guess loses the minor cue
            raise UsageError(f"{source}:{n}: give 'negative' or 'negative_prompt', not both")
        # null as no negative prompt, as check_prompt(prompt, None) reads it.
        negative = obj[keys[0]] if keys and obj[keys[0]] is not None else ""
        if not isinstance(negative, str):
            raise UsageError(f"{source}:{n}: '{keys[0]}' must be a string or null")
        items.append((obj["prompt"], negative))
    return items

