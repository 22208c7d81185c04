"""Where bundled files live, in every way sdguard is installed."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def bundled_weights_dir() -> Path:
    """The `weights/` folder: inside the package when installed from a wheel (``sdguard/weights``),
    beside `safety/` in a checkout, an editable install or a ComfyUI/WebUI extension folder."""
    for candidate in (_HERE / "weights", _HERE.parent / "weights"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"sdguard's weights folder is missing (looked in {_HERE / 'weights'} and "
                            f"{_HERE.parent / 'weights'}); reinstall sdguard")
