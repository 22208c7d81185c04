"""JSON parsing that fails on any untrusted input the way malformed JSON does."""

from __future__ import annotations

import json
from typing import Any

NESTED_TOO_DEEPLY = "nested too deeply"


class JSONInputError(ValueError):
    """Input `json.loads` rejects other than by `json.JSONDecodeError`. Has `msg` like that error,
    so one ``except ValueError as e: ... e.msg`` serves both."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.msg = msg


def loads(text: str | bytes) -> Any:
    """`json.loads` for input sdguard did not write: a file, a label, a prompt list.

    Raises:
        ValueError: not valid JSON (`json.JSONDecodeError`), or nested too deeply / a number too long
            to convert (`JSONInputError`), so one ``except ValueError`` turns every bad input into a
            clear error, and ``e.msg`` is the reason without a position.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:  # json nests by recursion: deep brackets exhaust the stack
        raise JSONInputError(NESTED_TOO_DEEPLY) from None
    except ValueError as e:  # int() of a number longer than sys.get_int_max_str_digits()
        raise JSONInputError(str(e)) from None
