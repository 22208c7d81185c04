"""sdguard's own invisible watermark: a keyed, self-synchronising tiled pattern in luma (numpy only).

Design ("tile-sync"):

* The 80-bit message (48-bit payload + CRC-32, see `watermark_ecc`) is convolutionally encoded to
  258 bits. A 32x32-cell tile carries them: every cell belongs to one coded bit (keyed permutation,
  4 cells per bit) and has a keyed random sign, so the tile is a ±1 pattern.
* The tile is repeated over the whole image with a cell size proportional to the image
  (short side / 256, at least 2 px), rendered with bilinear interpolation (a smooth, low-frequency
  pattern) and added to luma only, scaled by local texture so it hides in busy areas
  (PSNR ~41 dB).
* The detector works at a normalised size (short side 256), whitens the image, finds the tile's
  period from the autocorrelation peaks (which survives resizing and cropping), resamples so a
  tile is 64x64 samples, folds all tiles onto one, finds the cyclic shift (cropping) by FFT
  correlation, then soft-decodes (Viterbi) and checks the CRC.

False detection: a decoded message passes the CRC-32 by chance with probability 2**-32; the
detector tries at most `_PERIOD_CANDIDATES` hypotheses per image, so the theoretical false
detection rate is below 3 * 2**-32 ≈ 7e-10 per image. A minimum coded-bit agreement is also
required (`MIN_AGREEMENT`), which only lowers it.

Anyone with the key (the default key is public) can read the mark and could remove it by
regenerating the image; detection is evidence when found, never proof of absence.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import watermark_ecc as ecc

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger("sdguard.watermark")

DEFAULT_KEY = "sdguard-wm-v1"
SCHEME = "sdguard-tilesync-v1"
TILE = 32                  # cells per tile side
FOLD = 64                  # detector samples per tile side (2 per cell, for sub-cell alignment)
MIN_SHORT_SIDE = 256       # smallest image the embedder accepts
CELLS_PER_SHORT_SIDE = 256  # cell size = short side / this ...
MIN_CELL_PX = 2.0          # ... but never finer than 2 px (JPEG eats finer detail)
NORM_SHORT_SIDE = 256      # the detector's working size
DEFAULT_STRENGTH = 2.3     # RMS luma change in 8-bit levels (PSNR ≈ 40.9 dB before clipping)
MASK_RANGE = (0.5, 1.8)    # texture masking: relative strength in flat vs busy areas
MIN_PERIOD, MAX_PERIOD_FRACTION = 20, 0.5  # autocorrelation search range (working pixels)
_PERIOD_CANDIDATES = 3
MIN_AGREEMENT = 0.62       # coded bits that must agree with the re-encoded message
_SEARCH_BITS = 96          # coded bits used to find the tile's shift (all are decoded)


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


def embed(rgb: np.ndarray, payload: bytes, *, key: str = DEFAULT_KEY,
          strength: float = DEFAULT_STRENGTH) -> np.ndarray:
    """Embed a 48-bit payload into an RGB image.

    Args:
        rgb: HxWx3 uint8 image, short side at least MIN_SHORT_SIDE.
        payload: 6 bytes.
        key: the watermark key (the default one is public).
        strength: RMS luma change in 8-bit levels.

    Returns:
        A new HxWx3 uint8 image.

    Raises:
        ValueError: wrong shape or dtype, image too small, or payload not 6 bytes.
    """
    import numpy as np
    from PIL import Image

    _check_image(rgb)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SHORT_SIDE:
        raise ValueError(f"image is {w}x{h}; the watermark needs at least {MIN_SHORT_SIDE} px on the short side")
    code = ecc.encode(ecc.message_bits(payload, key.encode()))
    layout = _layout(key)
    tile = layout.signs * (2.0 * code[layout.bit_of_cell] - 1.0)
    cell = max(MIN_CELL_PX, min(h, w) / CELLS_PER_SHORT_SIDE)
    # Work on the cell grid (one value per cell, texture mask included), then let PIL upsample it
    # bilinearly: pixel centre y + 0.5 maps to cell coordinate (y + 0.5) / cell.
    rows, cols = int(np.ceil(h / cell)) + 1, int(np.ceil(w / cell)) + 1
    cells = np.tile(tile, (rows // TILE + 1, cols // TILE + 1))[:rows, :cols]
    cells = (cells * _texture_mask(rgb, (cols, rows))).astype(np.float32)
    delta = np.asarray(Image.fromarray(cells, "F").resize((w, h), Image.BILINEAR, box=(0, 0, w / cell, h / cell)))
    delta = delta * (strength / max(float(np.sqrt(np.mean(delta * delta))), 1e-6))
    step = np.rint(delta).astype(np.int16)[:, :, None]
    return np.clip(rgb.astype(np.int16) + step, 0, 255).astype(np.uint8)


def detect(rgb: np.ndarray, *, key: str = DEFAULT_KEY) -> WatermarkResult:
    """Look for an sdguard watermark.

    Args:
        rgb: HxWx3 uint8 image (any size; tiny images simply give "not marked").

    Returns:
        A WatermarkResult; `detected` is False on unmarked images.

    Raises:
        ValueError: wrong shape or dtype.
    """
    _check_image(rgb)
    residual = _whitened_luma(rgb)
    for period in _find_periods(residual):
        result = _decode_at(residual, period, key)
        if result.detected:
            return result
    return WatermarkResult(False, None, 0.0)


# --- layout and rendering -------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    bit_of_cell: np.ndarray   # (TILE, TILE) coded-bit index of each cell
    signs: np.ndarray         # (TILE, TILE) ±1
    patterns: np.ndarray      # (CODED_BITS, FOLD * FOLD) each bit's pattern at the detector's resolution
    spectra: np.ndarray       # (_SEARCH_BITS, FOLD, FOLD//2+1) conj rfft2 of the first patterns


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
    patterns = up @ masks @ up.T
    spectra = np.conj(np.fft.rfft2(patterns[:_SEARCH_BITS]))
    return _Layout(bit_of_cell, signs, patterns.reshape(ecc.CODED_BITS, -1), spectra)


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


def _texture_mask(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Relative embedding strength per cell (grid `size` = (cols, rows)): more where busy (median 1)."""
    import numpy as np
    from PIL import Image

    y = np.asarray(Image.fromarray(rgb).convert("L").resize(size, Image.BILINEAR), dtype=np.float32)
    activity = np.sqrt(np.maximum(_box(np.square(y - _box(y, 1)), 2), 0.0))
    return np.clip(activity / max(float(np.median(activity)), 1.0), *MASK_RANGE) ** 0.5


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges replicated (cumulative sums; no scipy)."""
    import numpy as np

    k = 2 * r + 1
    p = np.pad(a, r, mode="edge").astype(np.float64)
    c = np.cumsum(np.cumsum(p, axis=0), axis=1)
    c = np.pad(c, ((1, 0), (1, 0)))
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (s / (k * k)).astype(np.float32)


# --- detection ------------------------------------------------------------------------------

def _whitened_luma(rgb: np.ndarray) -> np.ndarray:
    """Luma at the working size minus a local mean, divided by the local residual level."""
    import numpy as np
    from PIL import Image

    h, w = rgb.shape[:2]
    # PIL's 8-bit luma (ITU-R 601) rounds each pixel; the downscale below averages that noise away.
    luma = Image.fromarray(rgb).convert("L").convert("F")
    scale = NORM_SHORT_SIDE / min(h, w)
    if scale < 1:
        luma = luma.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    y = np.asarray(luma, dtype=np.float32)
    r = y - _box(y, 1)
    level = np.sqrt(np.maximum(_box(r * r, 3), 0.0)) + 1.0
    return np.clip(r / level, -3.0, 3.0)


def _find_periods(residual: np.ndarray) -> list[tuple[float, float]]:
    """Up to _PERIOD_CANDIDATES (period_y, period_x) pairs, strongest autocorrelation first."""
    import numpy as np

    h, w = residual.shape
    max_p = int(min(h, w) * MAX_PERIOD_FRACTION)
    if max_p <= MIN_PERIOD:
        return []
    spec = np.fft.rfft2(residual - residual.mean())
    ac = np.fft.irfft2(np.abs(spec), s=residual.shape)  # |F| instead of |F|^2: flattens the host spectrum
    ac /= max(float(ac[0, 0]), 1e-12)
    lags = np.arange(MIN_PERIOD, max_p + 1)
    score = ac[lags, 0] + ac[0, lags] + ac[lags, lags] + ac[-lags, lags]
    peaks = [i for i in range(1, len(lags) - 1) if score[i] >= score[i - 1] and score[i] >= score[i + 1]]
    peaks.sort(key=lambda i: -score[i])
    return [(_refine(ac[:, 0], lags[i]), _refine(ac[0, :], lags[i])) for i in peaks[:_PERIOD_CANDIDATES]]


def _refine(ac_axis: np.ndarray, period: int) -> float:
    """Sub-pixel period from the peaks at multiples of `period` along one autocorrelation axis."""
    n = len(ac_axis) // 2
    est, num, den = float(period), 0.0, 0.0
    k = 1
    while round(k * est) + 1 < n:
        c = round(k * est)
        c += max((-1, 0, 1), key=lambda d: ac_axis[c + d]) if c + 2 < n else 0
        left, mid, right = ac_axis[c - 1], ac_axis[c], ac_axis[c + 1]
        curve = left - 2 * mid + right
        offset = 0.5 * (left - right) / curve if curve < 0 else 0.0
        pos = c + max(-0.5, min(0.5, offset))
        num, den = num + k * pos, den + k * k
        est = num / den
        k += 1
    return est


def _decode_at(residual: np.ndarray, period: tuple[float, float], key: str) -> WatermarkResult:
    import numpy as np
    from PIL import Image

    py, px = period
    h, w = residual.shape
    out_w, out_h = int(w * FOLD / px), int(h * FOLD / py)
    box = (0.0, 0.0, out_w * px / FOLD, out_h * py / FOLD)
    resampled = np.asarray(Image.fromarray(residual, "F").resize((out_w, out_h), Image.BILINEAR, box=box))
    pad_h, pad_w = -out_h % FOLD, -out_w % FOLD
    folded = np.pad(resampled, ((0, pad_h), (0, pad_w))).reshape(
        (out_h + pad_h) // FOLD, FOLD, (out_w + pad_w) // FOLD, FOLD).sum(axis=(0, 2))
    layout = _layout(key)
    # The shift is where the bit correlations carry the most energy (whatever their signs).
    corr = np.fft.irfft2(np.fft.rfft2(folded)[None] * layout.spectra, s=(FOLD, FOLD))
    energy = np.einsum("bij,bij->ij", corr, corr)
    dy, dx = np.unravel_index(int(np.argmax(energy)), energy.shape)
    soft = layout.patterns @ np.roll(folded, (-dy, -dx), axis=(0, 1)).reshape(-1)
    soft = soft / max(float(np.std(soft)), 1e-12)
    bits = ecc.viterbi(soft)
    payload = ecc.check_message(bits, key.encode())
    if payload is None:
        return WatermarkResult(False, None, 0.0, period=round(float(px), 3))
    agreement = float(np.mean((soft > 0) == (ecc.encode(bits) > 0)))
    if agreement < MIN_AGREEMENT:
        return WatermarkResult(False, None, 0.0, period=round(float(px), 3))
    return WatermarkResult(True, payload.hex(), round(agreement, 4), period=round(float(px), 3))


def _check_image(rgb: Any) -> None:
    import numpy as np

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an HxWx3 uint8 RGB array")
