"""Shared fixtures. Tests download nothing; weights come from installed packages or are built here."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdguard import load_policy


@pytest.fixture
def lexical_policy(tmp_path: Path):
    """A profile with the semantic classifier switched off, to test the lexical stage alone."""

    def make(profile: str = "public"):
        path = tmp_path / f"{profile}-lexical.toml"
        path.write_text(f'extends = "{profile}"\nname = "{profile}-lexical"\n[prompt]\nsemantic = "off"\n')
        return load_policy(path)

    return make
