"""Reader for the legacy Stable Diffusion invisible-watermark marks, in numpy only.

SD v1 scripts ("StableDiffusionV1", 136 bits) and SDXL (48 bits 0xB3EC907BB19E) embed with
invisible-watermark's "dwtDct" method. This module reproduces that package's (0.2.0) decoder
bit for bit without importing it (it pulls in opencv and, through its package, torch):

* BGR -> YUV with OpenCV's 8-bit fixed-point arithmetic (14-bit coefficients, rounded, saturated);
* a one-level Haar DWT of the U channel (cropped to a multiple of 4), keeping the LL band, computed
  in the same floating-point order as PyWavelets so results agree to the last bit;
* 4x4 blocks of LL in row-major order; in each, the non-DC coefficient of largest magnitude
  (first one on ties) reads 1 when |value| mod 36 > 18 (quantisation index modulation);
* block k votes for bit k mod length; a bit is 1 when the mean vote * 255 > 127.

Only the default configuration is supported (scales [0, 36, 36]: only U carries the mark, block 4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SCALE = 36.0               # QIM step of invisible-watermark's default dwtDct configuration (U channel)
BLOCK = 4                  # LL coefficients per block side
MIN_PIXELS = 256 * 256     # invisible-watermark refuses smaller images
_YUV_SHIFT = 14            # OpenCV's fixed-point precision for BGR -> YUV
_R2Y, _G2Y, _B2Y = 4899, 9617, 1868   # 0.299, 0.587, 0.114 in 1/2**14
_B2U = 8061                # 0.492 in 1/2**14
_HAAR = 0.7071067811865476  # PyWavelets' haar decomposition low-pass taps


def decode_bits(rgb: np.ndarray, length: int) -> np.ndarray:
    """The `length` bits invisible-watermark's dwtDct decoder would read from this image.

    Args:
        rgb: HxWx3 uint8 RGB image (note: RGB, not OpenCV's BGR).
        length: watermark length in bits (48 for SDXL, 136 for SD v1).

    Returns:
        uint8 array of `length` bits, identical to
        ``WatermarkDecoder("bits", length).decode(rgb[:, :, ::-1], "dwtDct")``.

    Raises:
        ValueError: wrong shape or dtype, fewer than 256*256 pixels, or length < 1.
    """
    import numpy as np

    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected an HxWx3 uint8 RGB array")
    rows, cols = rgb.shape[:2]
    if rows * cols < MIN_PIXELS or length < 1:
        raise ValueError(f"need at least {MIN_PIXELS} pixels and length >= 1, got {cols}x{rows}, {length}")
    u = _opencv_u(rgb[:rows // 4 * 4, :cols // 4 * 4])
    ll = _haar_ll(u)
    h, w = ll.shape[0] // BLOCK, ll.shape[1] // BLOCK
    blocks = ll[:h * BLOCK, :w * BLOCK].reshape(h, BLOCK, w, BLOCK).transpose(0, 2, 1, 3).reshape(h * w, BLOCK * BLOCK)
    ac = blocks[:, 1:]
    pick = np.argmax(np.abs(ac), axis=1)   # argmax returns the first maximum, like the original
    value = np.abs(ac[np.arange(len(ac)), pick])
    votes = (np.mod(value, SCALE) > 0.5 * SCALE).astype(np.int64)
    bit_of_block = np.arange(len(votes)) % length
    ones = np.bincount(bit_of_block, weights=votes, minlength=length)
    count = np.bincount(bit_of_block, minlength=length)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = ones / count                 # a bit without blocks reads nan -> 0, as in the original
    return (mean * 255 > 127).astype(np.uint8)


def _opencv_u(rgb: np.ndarray) -> np.ndarray:
    """U of OpenCV's 8-bit BGR2YUV: Y and U in 14-bit fixed point, rounded, saturated to 0-255."""
    import numpy as np

    r, g, b = (rgb[:, :, i].astype(np.int32) for i in range(3))
    half = 1 << (_YUV_SHIFT - 1)
    y = (r * _R2Y + g * _G2Y + b * _B2Y + half) >> _YUV_SHIFT
    u = ((b - y) * _B2U + (128 << _YUV_SHIFT) + half) >> _YUV_SHIFT
    return np.clip(u, 0, 255).astype(np.float64)


def _haar_ll(a: np.ndarray) -> np.ndarray:
    """LL band of a one-level Haar DWT, rows first then columns, with PyWavelets' rounding."""
    rows = a[0::2] * _HAAR + a[1::2] * _HAAR
    return rows[:, 0::2] * _HAAR + rows[:, 1::2] * _HAAR
