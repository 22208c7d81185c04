"""Visible AI-content label ("AI生成" / "AI-generated") drawn in a corner, per GB 45438-2025.

Text height (the ink of the glyphs) is at least 5 % of the image's shorter side. White text on a
semi-opaque black box stays legible on light and dark images alike. The font is bundled
(`data/fonts/sdguard-label-sans.otf`, an OFL subset of Noto Sans CJK SC Bold), so the label renders
the same on Windows, macOS and Linux without system CJK fonts.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from PIL import ImageFont

FONT_PATH = Path(__file__).resolve().parent / "data" / "fonts" / "sdguard-label-sans.otf"
MIN_HEIGHT_FRACTION = 0.05    # GB 45438-2025: text height >= 5 % of the shortest side
HEIGHT_FRACTION = 0.055       # what we draw: a little above the minimum, so rounding never undercuts it
PADDING = 0.35                # box padding, in text heights
MARGIN_FRACTION = 0.015       # gap between the box and the image edge, of the short side
BOX_ALPHA = 0.62              # box opacity: dark enough behind white text on a white image
CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
TEXTS = ("AI生成", "AI-generated", "AI生成 AI-generated", "人工智能生成")


def draw_label(rgb: np.ndarray, text: str = TEXTS[0], corner: str = CORNERS[0]) -> np.ndarray:
    """Draw the visible label onto a copy of an RGB or RGBA image.

    Args:
        rgb: HxWx3 (RGB) or HxWx4 (RGBA) uint8 image. With alpha the box is composited over the
            pixels as a viewer would, so it shows on a transparent background too.
        text: one of TEXTS (the bundled font has only those glyphs).
        corner: one of CORNERS.

    Returns:
        A new uint8 image with as many channels as `rgb`.

    Raises:
        ValueError: unknown text or corner, wrong array, or an image too narrow for the label.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    if text not in TEXTS:
        raise ValueError(f"label text must be one of {TEXTS}, got {text!r}")
    if corner not in CORNERS:
        raise ValueError(f"label corner must be one of {CORNERS}, got {corner!r}")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError("expected an HxWx3 (RGB) or HxWx4 (RGBA) uint8 array")
    h, w = rgb.shape[:2]
    target = max(1.0, HEIGHT_FRACTION * min(h, w))
    font = _font_for_height(text, target)
    left, top, right, bottom = font.getbbox(text)
    text_h = bottom - top
    pad, margin = math.ceil(PADDING * text_h), math.ceil(MARGIN_FRACTION * min(h, w))
    box_w, box_h = right - left + 2 * pad, text_h + 2 * pad
    if box_w + 2 * margin > w or box_h + 2 * margin > h:
        raise ValueError(f"image {w}x{h} is too small for a legible label ({box_w}x{box_h} px)")
    x0 = margin if corner.endswith("left") else w - margin - box_w
    y0 = margin if corner.startswith("top") else h - margin - box_h
    mode = "RGBA" if rgb.shape[2] == 4 else "RGB"
    base = Image.fromarray(rgb, mode).convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((x0, y0, x0 + box_w - 1, y0 + box_h - 1), fill=(0, 0, 0, round(255 * BOX_ALPHA)))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(base, overlay).convert(mode))


def text_height(text: str, size: int) -> int:
    """Ink height in pixels of `text` at font size `size` (what the 5 % rule measures)."""
    _, top, _, bottom = _font(size).getbbox(text)
    return bottom - top


def _font_for_height(text: str, target: float) -> ImageFont.FreeTypeFont:
    """The smallest font size whose ink height for `text` reaches `target` pixels."""
    size = max(4, math.ceil(target * 1.2))
    while text_height(text, size) > target and size > 4:
        size -= 1
    while text_height(text, size) < target:
        size += 1
    return _font(size)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    if not FONT_PATH.is_file():
        raise FileNotFoundError(f"the bundled label font is missing ({FONT_PATH}); reinstall sdguard")
    return ImageFont.truetype(str(FONT_PATH), size)
