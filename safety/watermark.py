"""sdguard's own invisible watermark: a keyed, self-synchronising tiled pattern in luma and chroma (numpy only).

Design ("tile-sync"):

* The 80-bit message (48-bit payload + CRC-32, see `watermark_ecc`) is convolutionally encoded to
  258 bits. A 32x32-cell tile carries them: every cell belongs to one coded bit (keyed permutation,
  4 cells per bit) and has a keyed random sign, so the tile is a ±1 pattern.
* The tile is repeated over the whole image (cell size: see `cell_size`, 2-4 px up to 1024 px,
  short side / 256 above), rendered with bilinear interpolation and added twice: to luma, and to
  chroma (the Cr direction, which leaves luma unchanged) shifted by half a tile, so the two copies
  are independent. Chroma carries the mark where luma texture would drown it (grass, gravel,
  grey images); luma carries it through JPEG/WebP, which quantise chroma hard. The amplitude per
  cell is set from local texture so that local SSIM stays near `SSIM_TARGET` (faint in flat areas,
  strong in busy ones) and split between luma and chroma by the same texture (mostly luma where
  flat, more chroma where busy: `LUMA_SHARE_FLAT`), faded per channel near black, and capped at an
  RMS of `strength` levels over the three channels (PSNR >= 40.2 dB).
* Detection (`watermark_detect`) finds the tile's period and shift, folds all tiles onto one and
  soft-decodes; see that module for how, and for the false-detection bound (about 1.3e-8 per image).

Not robust to rotation (the period search assumes an axis-aligned grid) or to regeneration.
Anyone with the key (the default key is public) can read the mark and could remove it by
regenerating the image; detection is evidence when found, never proof of absence.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import watermark_ecc as ecc

if TYPE_CHECKING:
    import numpy as np

DEFAULT_KEY = "sdguard-wm-v1"
SCHEME = "sdguard-tilesync-v1"
TILE = 32                  # cells per tile side
FOLD = 64                  # detector samples per tile side (2 per cell, for sub-cell alignment)
MIN_SHORT_SIDE = 256       # smallest image the embedder accepts
# Cell size: short/128 for small images (at most 4 px), short/256 for large ones, never under 2 px.
# Coarse cells survive WebP/JPEG (which code flat 4x4 blocks by their mean) and cost less SSIM;
# fine cells give more cells per bit. See cell_size().
SMALL_CELLS_PER_SHORT_SIDE = 128
MAX_SMALL_CELL_PX = 4.0
CELLS_PER_SHORT_SIDE = 256
MIN_CELL_PX = 2.0
NORM_SHORT_SIDE = 256      # the detector's working size
DEFAULT_STRENGTH = 2.45    # at most this RMS change over R, G, B in 8-bit levels (PSNR >= 40.2 dB)
SSIM_TARGET = 0.982        # per-window SSIM the texture mask aims for (see _texture_mask)
# Cell amplitude per allowed in-window RMS, by cell size in px (measured: bilinear rendering and
# SSIM's window both see only part of a coarse pattern's variance).
_SSIM_GAIN = ((2.0, 3.0, 4.0, 6.0, 8.0), (1.49, 1.88, 1.88, 2.18, 2.67))
DARK_MARGIN = 3.0          # levels above black over which the mark fades ...
DARK_FLOOR = 0.3           # ... down to this fraction of its strength
_SSIM_C2 = (0.03 * 255) ** 2
# Share of the mask's amplitude in luma (the chroma share is sqrt(1 - luma**2)): most in flat areas, where
# luma survives WebP/JPEG and chroma does not; less where luma texture (local std, in levels) would drown
# the luma copy at the detector while chroma stays clean (grass, gravel). Linear in the local std between.
LUMA_SHARE_FLAT, LUMA_SHARE_TEXTURED = 0.9, 0.65
TEXTURE_STD_FLAT, TEXTURE_STD_TEXTURED = 3.0, 15.0
CHROMA_G = -0.509          # G change per R change for a luma-neutral (Cr-direction) chroma pattern
CHROMA_OF_CHANNEL = (1.0, CHROMA_G, 0.0)  # the chroma pattern's share in R, G, B
_BLOCK_ROWS = 16           # embed's full-size rows per block (a few float32 rows: stays in cache)


@dataclass(frozen=True)
class WatermarkResult:
    """What the detector found in one image.

    Attributes:
        detected: True when a message decoded and passed its checksum.
        payload: the payload as hex (12 digits) when detected, else None.
        confidence: fraction of the 258 coded bits that agree with the decoded message
            (0.5 is chance, 1.0 a perfect read); 0.0 when nothing was decoded.
        scheme: which watermark this is ("sdguard-tilesync-v1").
        period: the tile period found, in working pixels (None when no period was found).
    """

    detected: bool
    payload: str | None
    confidence: float
    scheme: str = SCHEME
    period: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_payload(text: str) -> bytes:
    """A payload from hex text (up to 12 hex digits, left-padded with zeros).

    Raises:
        ValueError: not hex, or longer than 48 bits.
    """
    digits = text.strip().lower().removeprefix("0x")
    if not digits or len(digits) > ecc.PAYLOAD_BITS // 4 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"payload must be 1-{ecc.PAYLOAD_BITS // 4} hex digits, got {text!r}")
    return bytes.fromhex(digits.rjust(ecc.PAYLOAD_BITS // 4, "0"))


def embed(rgb: np.ndarray, payload: bytes, *, key: str = DEFAULT_KEY, strength: float = DEFAULT_STRENGTH,
          ssim_target: float = SSIM_TARGET) -> np.ndarray:
    """Embed a 48-bit payload into an RGB image.

    Args:
        rgb: HxWx3 uint8 image, short side at least MIN_SHORT_SIDE.
        payload: 6 bytes.
        key: the watermark key (the default one is public).
        strength: the most RMS luma change allowed, in 8-bit levels (caps PSNR).
        ssim_target: local SSIM the texture mask aims for; lower is more robust and more visible.

    Returns:
        A new HxWx3 uint8 image.

    Raises:
        ValueError: wrong shape or dtype, image too small, payload not 6 bytes, or bad settings.
    """
    import numpy as np

    _check_image(rgb)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SHORT_SIDE:
        raise ValueError(f"image is {w}x{h}; the watermark needs at least {MIN_SHORT_SIDE} px on the short side")
    if not (0.5 < ssim_target < 1.0 and strength > 0):
        raise ValueError(f"need 0.5 < ssim_target < 1 and strength > 0, got {ssim_target}, {strength}")
    code = ecc.encode(ecc.message_bits(payload, key.encode()))
    layout = _layout(key)
    tile = (layout.signs * (2.0 * code[layout.bit_of_cell] - 1.0)).astype(np.float32)
    cell = cell_size(min(h, w))
    # Work on the cell grid (one value per cell, texture mask included), then upsample it
    # bilinearly: pixel centre y + 0.5 maps to cell coordinate (y + 0.5) / cell.
    rows, cols = int(np.ceil(h / cell)) + 1, int(np.ceil(w / cell)) + 1
    cells = np.tile(tile, (rows // TILE + 2, cols // TILE + 2))
    cells = cells[:rows + TILE, :cols + TILE]
    cells, shifted = cells[:rows, :cols], cells[TILE // 2:TILE // 2 + rows, TILE // 2:TILE // 2 + cols]
    amp, luma_share, fades = _texture_mask(rgb, (cols, rows), cell, ssim_target)
    # Luma and chroma carry the same tile, the chroma copy shifted by half a tile so the two patterns
    # are independent (each channel's SSIM window sees their variances add, not their amplitudes).
    # Each channel fades on its own near black, so a saturated colour keeps its mark in the others.
    luma, chroma = amp * luma_share * cells, amp * np.sqrt(1.0 - luma_share * luma_share) * shifted  # float32
    grids = [fade * (luma + np.float32(k) * chroma) for fade, k in zip(fades, CHROMA_OF_CHANNEL)]
    rows_up, cols_up = _bilinear_taps(h, cell, rows), _bilinear_taps(w, cell, cols)
    # The PSNR budget caps what the SSIM mask allows. The rendered energy is computed on the cell
    # grid (exact: see _rendered_energy), so the scale goes into the grids before the full-size render.
    grams = (_gram(rows_up, rows), _gram(cols_up, cols))
    mse = sum(_rendered_energy(g, grams) for g in grids) / (3 * h * w)
    scale = np.float32(min(1.0, strength / max(np.sqrt(mse), 1e-12)))
    return _add_rendered(rgb, [grid * scale for grid in grids], rows_up, cols_up)


def detect(rgb: np.ndarray, *, key: str = DEFAULT_KEY) -> WatermarkResult:
    """Look for an sdguard watermark.

    Args:
        rgb: HxWx3 uint8 image (any size; tiny images simply give "not marked").

    Returns:
        A WatermarkResult; `detected` is False on unmarked images.

    Raises:
        ValueError: wrong shape or dtype.
    """
    # The detector builds on this module's layout, so it is imported here, on use, not at the top.
    from .watermark_detect import find

    _check_image(rgb)
    return find(rgb, key)


# --- layout and rendering -------------------------------------------------------------------

def cell_size(short_side: int) -> float:
    """Cell size in px: short/128 up to 4 px (small images keep enough tiles), then short/256."""
    return max(min(short_side / SMALL_CELLS_PER_SHORT_SIDE, MAX_SMALL_CELL_PX), short_side / CELLS_PER_SHORT_SIDE,
               MIN_CELL_PX)


def _bilinear_taps(n: int, cell: float, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear upsampling of `size` grid samples to `n` pixels, pixel centre (i + 0.5) at (i + 0.5) / cell.

    Returns:
        For each pixel, its lower grid index, its upper grid index and the upper one's weight
        (float32); at the edges both indices are the edge sample (weight 0), like PIL's BILINEAR.
    """
    import numpy as np

    u = (np.arange(n) + 0.5) / cell - 0.5
    lo = np.floor(u)
    frac = (u - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    low, high = np.clip(lo, 0, size - 1), np.clip(lo + 1, 0, size - 1)
    frac[low == high] = 0.0
    return low, high, frac


def _add_rendered(rgb: np.ndarray, grids: list[np.ndarray], rows: tuple, cols: tuple) -> np.ndarray:
    """rgb plus each channel's grid upsampled bilinearly (taps from _bilinear_taps), rounded and clipped.

    Columns are interpolated first, at grid height (gathering columns is slow, so never at full size);
    then each output row is one gathered row plus a weighted gathered row difference. Full-size work
    goes in blocks of _BLOCK_ROWS rows, so its several passes run in cache rather than in memory.

    Returns:
        A new HxWx3 uint8 image.
    """
    import numpy as np

    (r0, _, fy), (c0, c1, fx) = rows, cols
    h, w = rgb.shape[:2]
    # Channels last, like rgb, so every full-size pass is contiguous; rows of w*3 values keep numpy's
    # inner loops long (a trailing axis of 3 makes broadcasting slow).
    across = np.empty((grids[0].shape[0], w, 3), np.float32)
    for channel, grid in enumerate(grids):
        across[:, :, channel] = grid[:, c0] * (1.0 - fx) + grid[:, c1] * fx
    across = across.reshape(len(across), w * 3)
    step = np.zeros_like(across)
    step[:-1] = across[1:] - across[:-1]    # r1 is r0 + 1 wherever its weight is not 0
    flat = rgb.reshape(h, w * 3)
    out = np.empty_like(flat)
    buf = np.empty((_BLOCK_ROWS, w * 3), np.float32)
    for top in range(0, h, _BLOCK_ROWS):
        index, n = r0[top:top + _BLOCK_ROWS], min(_BLOCK_ROWS, h - top)
        d = buf[:n]
        np.multiply(step[index], fy[top:top + n, None], out=d)
        d += across[index]
        np.rint(d, out=d)
        d += flat[top:top + n]
        np.clip(d, 0, 255, out=d)
        out[top:top + n] = d
    return out.reshape(rgb.shape)


def _gram(taps: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
    """R.T @ R for the upsampling matrix R (pixels x grid) of `taps`: its diagonal and off-diagonal.

    Each pixel mixes two neighbouring samples, so R.T @ R is tridiagonal.
    """
    import numpy as np

    low, high, frac = taps
    frac = frac.astype(np.float64)
    diagonal = (np.bincount(low, (1.0 - frac) ** 2, minlength=size) + np.bincount(high, frac ** 2, minlength=size))
    return diagonal, np.bincount(low, frac * (1.0 - frac), minlength=size)[:-1]


def _rendered_energy(grid: np.ndarray, grams: tuple) -> float:
    """Sum of squares of the bilinear upsampling of `grid` (see _add_rendered), computed on the grid.

    With the upsampling written as Ry @ grid @ Rx.T, the energy is sum((Gy @ grid) * (grid @ Gx)) for the
    tridiagonal Gram matrices G = R.T @ R (see _gram), so it never touches the full-size image.
    """
    import numpy as np

    (dy, oy), (dx, ox) = grams
    g = grid.astype(np.float64)
    left = dy[:, None] * g
    left[:-1] += oy[:, None] * g[1:]
    left[1:] += oy[:, None] * g[:-1]
    right = g * dx
    right[:, :-1] += g[:, 1:] * ox
    right[:, 1:] += g[:, :-1] * ox
    return float(np.sum(left * right))


@dataclass(frozen=True)
class _Layout:
    bit_of_cell: np.ndarray   # (TILE, TILE) coded-bit index of each cell
    signs: np.ndarray         # (TILE, TILE) ±1
    upsample: np.ndarray      # (FOLD, TILE) bilinear weights from cells to the detector's fold samples
    cell_order: np.ndarray    # flat cell indices sorted by coded bit ...
    bit_starts: np.ndarray    # ... and where each bit's cells start in that order
    spectra: np.ndarray       # (CODED_BITS, FOLD//2, FOLD//4+1) conj rfft2 of the bit patterns at half resolution


@functools.lru_cache(maxsize=4)
def _layout(key: str) -> _Layout:
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(f"{SCHEME}:{key}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    bit_of_cell = (rng.permutation(TILE * TILE) % ecc.CODED_BITS).reshape(TILE, TILE)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(TILE, TILE))
    # Each bit's own pattern at the detector's resolution (2 samples per cell), bilinear like the embedder.
    up = _interp_matrix(FOLD, FOLD / TILE)
    masks = np.zeros((ecc.CODED_BITS, TILE, TILE))
    masks[bit_of_cell, np.arange(TILE)[:, None], np.arange(TILE)[None, :]] = signs
    half = FOLD // 2
    coarse = (up @ masks @ up.T).reshape(ecc.CODED_BITS, half, 2, half, 2).sum(axis=(2, 4))
    spectra = np.conj(np.fft.rfft2(coarse)).astype(np.complex64)  # single precision: plenty, and faster
    order = np.argsort(bit_of_cell.reshape(-1), kind="stable")
    starts = np.searchsorted(bit_of_cell.reshape(-1)[order], np.arange(ecc.CODED_BITS))
    return _Layout(bit_of_cell, signs, up.astype(np.float32), order, starts, spectra)


def _interp_matrix(n: int, cell: float) -> np.ndarray:
    """(n, TILE) matrix sampling a periodic TILE-cell signal at n pixels with bilinear weights."""
    import numpy as np

    u = (np.arange(n) + 0.5) / cell - 0.5
    lo = np.floor(u)
    frac = u - lo
    m = np.zeros((n, TILE))
    rows = np.arange(n)
    np.add.at(m, (rows, lo.astype(np.int64) % TILE), 1.0 - frac)
    np.add.at(m, (rows, (lo.astype(np.int64) + 1) % TILE), frac)
    return m


def _texture_mask(rgb: np.ndarray, size: tuple[int, int], cell: float,
                  ssim_target: float) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude per cell (grid `size` = (cols, rows)) that keeps local SSIM near `ssim_target`.

    SSIM's structure term in a window with luma variance s2, after adding a pattern of variance v,
    is about (2*s2 + C2) / (2*s2 + v + C2), with C2 = (0.03 * 255)**2. Solving for v gives the
    largest pattern a window tolerates: flat areas get a faint mark, textured areas a strong one.
    _SSIM_GAIN converts that to a cell amplitude; it grows with the cell size because a coarser
    pattern puts less of its variance inside SSIM's 7-px windows (measured on flat images).
    Near black the mark fades (to DARK_FLOOR), since clipping at 0 would shift the local mean.
    Variance is measured on a grid twice as fine as the cells (closer to SSIM's windows).

    Returns:
        The amplitude grid (rows, cols), the luma share of it per cell (rows, cols; see
        LUMA_SHARE_FLAT) and each channel's near-black fade (3, rows, cols).
    """
    import numpy as np
    from PIL import Image

    cols, rows = size
    small = Image.fromarray(rgb).resize((2 * cols, 2 * rows), Image.BILINEAR, reducing_gap=2.0)
    y = np.asarray(small.convert("L"), dtype=np.float32)
    mean = _box(y, 1)
    var = np.maximum(_box(y * y, 1) - mean * mean, 0.0)
    # The flattest spot in a cell decides, so a flat area beside an edge does not get the edge's mark.
    var = _min2x2(var)
    # A channel near black cannot go below 0, so the mark would lift its mean (SSIM's luminance term
    # punishes that near 0); fade the mark there, per channel, down to a floor. Clipping near white
    # only loses signal.
    # The minimum commutes with the (monotonic) fade, so take it on uint8 and map levels through a table.
    levels = np.arange(256, dtype=np.float32)
    fade_of_level = DARK_FLOOR + (1.0 - DARK_FLOOR) * np.clip(levels / DARK_MARGIN, 0.0, 1.0)
    fades = fade_of_level[np.moveaxis(_min2x2(np.asarray(small)), 2, 0)]
    cells, gains = _SSIM_GAIN
    gain = float(np.interp(cell, cells, gains)) * max(1.0, cell / cells[-1]) ** 0.5
    slack = 1.0 / ssim_target - 1.0
    luma_share = np.interp(np.sqrt(var), (TEXTURE_STD_FLAT, TEXTURE_STD_TEXTURED),
                           (LUMA_SHARE_FLAT, LUMA_SHARE_TEXTURED)).astype(np.float32)
    return gain * np.sqrt(slack * (2.0 * var + _SSIM_C2)), luma_share, fades


def _min2x2(a: np.ndarray) -> np.ndarray:
    """Minimum of each 2x2 block (elementwise minima: much faster than a strided reduce)."""
    import numpy as np

    return np.minimum(np.minimum(a[0::2, 0::2], a[0::2, 1::2]), np.minimum(a[1::2, 0::2], a[1::2, 1::2]))


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated (separable sums of shifted slices; no scipy).

    Windows are small (r <= 3), so summing shifted slices in float32 is exact enough and faster
    than cumulative sums (which would need float64 to stay precise).
    """
    import numpy as np

    k = 2 * r + 1
    p = np.pad(a.astype(np.float32, copy=False), r, mode="edge")
    rows = p[:p.shape[0] - k + 1].copy()
    for i in range(1, k):
        rows += p[i:p.shape[0] - k + 1 + i]
    out = rows[:, :rows.shape[1] - k + 1].copy()
    for j in range(1, k):
        out += rows[:, j:rows.shape[1] - k + 1 + j]
    return out * np.float32(1.0 / (k * k))


def _check_image(rgb: Any) -> None:
    import numpy as np

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an HxWx3 uint8 RGB array")
