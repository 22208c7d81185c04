"""An HTML report of a model scan that a moderator can read: per file the verdict, the evidence
and the top training tags. One self-contained file (inline CSS, no scripts, nothing fetched);
every value from a model file is escaped, since names, tags and metadata are attacker-controlled.
"""

from __future__ import annotations

import html
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ._files import write_atomic

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em} h2{font-size:1.05em;margin:0;word-break:break-all}
.file{border:1px solid #ccc;border-radius:6px;padding:.8em 1em;margin:1em 0}
.badge{display:inline-block;padding:.1em .6em;border-radius:4px;font-weight:bold;color:#fff;margin-right:.5em}
.allow{background:#2e7d32}.warn{background:#b26a00}.censor{background:#6a1b9a}.block{background:#c62828}
table{border-collapse:collapse;margin:.4em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
code{font-size:.9em;word-break:break-all} .error{color:#c62828} .muted{color:#666}
"""
_EVIDENCE_COLUMNS = ("reason", "category", "source", "term", "field", "score", "threshold", "detail")


def render_report(records: Sequence[Mapping[str, Any]], *, title: str = "sdguard model scan") -> str:
    """The report as an HTML string.

    Args:
        records (`Sequence[Mapping]`): one per file, as `sdguard scan-models --json` prints them.
        title (`str`, *optional*): the page title.

    Returns:
        `str`: a complete HTML document.
    """
    counts = Counter(str(r.get("action", "")) for r in records)
    summary = ", ".join(f"{n} {_e(action)}" for action, n in sorted(counts.items()))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    # Blocked files first, so the moderator sees them without scrolling.
    order = {"block": 0, "censor": 1, "warn": 2, "allow": 3}
    ordered = sorted(records, key=lambda r: (order.get(str(r.get("action")), 0), str(r.get("path", ""))))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{len(records)} file(s): {summary or "none"}. Generated {when}.</p>',
    ]
    parts += [_file_section(r) for r in ordered]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(path: str | os.PathLike[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Write the report atomically (a temporary file renamed into place), so a failed scan never
    leaves half a report behind; a new report gets the umask's mode, a replaced one keeps its own."""
    report = render_report(records).encode("utf-8")
    write_atomic(path, lambda f: f.write(report))


def _file_section(record: Mapping[str, Any]) -> str:
    action = str(record.get("action", "block"))
    css = action if action in ("allow", "warn", "censor", "block") else "block"
    out = ['<section class="file">',
           f'<h2><span class="badge {css}">{_e(action.upper())}</span>{_e(record.get("path", "?"))}</h2>']
    facts = [("format", record.get("format")), ("size", record.get("size")), ("sha256", record.get("sha256")),
             ("AutoV2", record.get("autov2")), ("AutoV3", record.get("autov3")),
             ("training images", record.get("train_images") or None)]
    out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                                   for k, v in facts if v not in (None, "")) + "</table>")
    if record.get("error"):
        out.append(f'<p class="error">Malformed: {_e(record["error"])}</p>')
    reasons = record.get("reasons") or []
    if reasons:
        out.append("<p><b>Why</b></p><ul>" + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    evidence = record.get("evidence") or []
    if evidence:
        out.append(_table(_EVIDENCE_COLUMNS, [[f.get(c) for c in _EVIDENCE_COLUMNS] for f in evidence],
                          caption="Evidence"))
    for key, label in (("pickle_dangerous", "Dangerous imports"), ("pickle_globals", "Imports")):
        if record.get(key):
            out.append(f"<p><b>{label}</b>: " + ", ".join(f"<code>{_e(g)}</code>" for g in record[key]) + "</p>")
    tags = record.get("top_tags") or []
    if tags:
        images = record.get("train_images") or 0
        rows = [[tag, count, f"{count / images:.1%}" if images else ""] for tag, count in tags]
        out.append(_table(("tag", "images", "share"), rows, caption="Top training tags"))
    out.append("</section>")
    return "\n".join(out)


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><caption>{_e(caption)}</caption><tr>{head}</tr>{body}</table>"


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)
