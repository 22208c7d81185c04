"""sdguard's exceptions: one base class, a few types, and a fix in every message."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .verdict import Verdict


class SdguardError(Exception):
    """Base class of every error sdguard raises on purpose."""


class PolicyError(SdguardError, ValueError):
    """A policy file is malformed or tries something the code forbids.

    The message names the file, the line (when known), the key and the allowed values.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = path or "<policy>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class GuardUnavailable(SdguardError):
    """A stage the policy requires cannot run (package missing, weights missing or corrupt).

    Hosts must refuse to generate rather than fall back to a weaker check.
    """


class Blocked(SdguardError):
    """Stops a run; carries the verdict that blocked it. Its message is safe to show a user."""

    def __init__(self, verdict: Verdict):
        super().__init__(verdict.message)
        self.verdict = verdict
