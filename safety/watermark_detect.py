"""Detector for sdguard's invisible watermark (`watermark` makes the mark; numpy + Pillow only).

The detector works at a normalised size (short side 256) on whitened luma and Cr, finds the
tile's period from the autocorrelation peaks (which survives resizing and cropping) and also
tries the nominal period (most edits keep the size), folds all tiles of both bands onto one
(the Cr fold rolled by half a tile) and removes block-grid (JPEG/WebP) frequencies. Two shifts
are tried per period: the shift of maximum correlation energy over all bit patterns (cropping)
and no shift (an uncropped image; near the noise floor the energy search misses first). A shift
whose energy is no more than noise gives (`SYNC_MIN_RATIO`) is not decoded at all, which keeps
unmarked images fast. Decoding is soft Viterbi on luma + chroma and a CRC check; if that fails,
the bands are re-weighted by their estimated signal-to-noise ratio (WebP and JPEG can wipe out
the chroma copy) and a list Viterbi decoder offers its `LIST_SIZE` best messages to the CRC.

False detection: a decoded message passes the CRC-32 by chance with probability 2**-32. The
detector checks at most `MAX_CRC_CHECKS` messages per image (`MAX_HYPOTHESES` = 6 period and shift
hypotheses, each with 1 + `LIST_SIZE` = 9 messages), so the theoretical false detection rate is at
most 54 * 2**-32 ≈ 1.3e-8 per image. A minimum coded-bit agreement is also required
(`MIN_AGREEMENT`), and the sync and list gates skip most hypotheses; both only lower it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import watermark_ecc as ecc
from .watermark import FOLD, NORM_SHORT_SIDE, TILE, WatermarkResult, _box, _Layout, _layout, cell_size

if TYPE_CHECKING:
    import numpy as np

# Tile period at the working size: 32-64 px as embedded (see cell_size), up to 1.25x that after a
# crop keeping 80 %; shorter lags are mostly JPEG/WebP block grids. At least two periods must fit.
MIN_PERIOD, MAX_PERIOD, MAX_PERIOD_FRACTION = 30, 100, 0.5
NOMINAL_TOLERANCE = 0.01   # a found period this close to the nominal one makes trying it redundant
MAX_ANISOTROPY = 0.03      # period_x and period_y of a real tile agree (cells are square)
BLOCK_NOTCH = 4            # fold DFT bins (u, v), both multiples of this, hold block-grid artefacts
_PERIOD_CANDIDATES = 2
# Decodes per image: each tile period tried (the autocorrelation's candidates plus the nominal one,
# see _candidates) at two shifts (see _soft_bits).
MAX_HYPOTHESES = (_PERIOD_CANDIDATES + 1) * 2
LIST_SIZE = 8              # messages the list decoder offers to the CRC after a failed first decode
# A shift hypothesis is decoded only when its energy ratio (see _soft_bits) reaches this: for the searched
# shift (the maximum over all shifts: noise reaches 1.3 on 9 % of unmarked images, marks that decode had
# >= 1.37 on the bench) and for the zero shift (a single draw: noise stays under 1.26, and marks that
# decode only there can sit at 1.03).
SYNC_MIN_RATIO, ZERO_SHIFT_MIN_RATIO = 1.3, 1.0
LIST_MIN_CORRELATION = 0.58 # re-weighted soft bits must correlate this well with their code to try the list
# Messages checked against the CRC-32 per image, each passing by chance with probability 2**-32.
MAX_CRC_CHECKS = MAX_HYPOTHESES * (1 + LIST_SIZE)
LUMA_OF_RGB = (0.299, 0.587, 0.114)       # RGB -> luma (ITU-R 601), the detector's luma band
CR_OF_RGB = (0.5, -0.4187, -0.0813)        # RGB -> Cr (ITU-R 601, without its offset), the chroma band
MIN_AGREEMENT = 0.62       # coded bits that must agree with the re-encoded message


def find(rgb: np.ndarray, key: str) -> WatermarkResult:
    """Look for the mark made with `key` in a checked HxWx3 uint8 image (see watermark.detect)."""
    bands = _whitened(rgb)
    for period in _candidates(bands[0] + bands[1], _nominal_period(min(rgb.shape[:2]))):
        result = _decode_at(bands, period, key)
        if result.detected:
            return result
    return WatermarkResult(False, None, 0.0)


def _whitened(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luma and Cr at the working size, each minus a local mean and divided by its local residual level.

    The image is box-reduced in RGB first (PIL, by the integer factor), and only the small image
    is converted to luma and Cr: converting the full-size image cost more than all the rest. The
    reduction rounds each averaged pixel to a whole level, noise of 0.3 levels RMS per working
    pixel, well under the mark's 1-3 levels there.
    """
    import numpy as np
    from PIL import Image

    h, w = rgb.shape[:2]
    image = Image.fromarray(rgb)
    scale = NORM_SHORT_SIDE / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    factor = int(1 / scale) if scale < 1 else 1
    if factor >= 2:  # an integer box reduction first: much faster than resampling the full image
        image = image.reduce(factor)
    small = np.asarray(image, dtype=np.float32)
    out = []
    for weights in (LUMA_OF_RGB, CR_OF_RGB):
        y = small[:, :, 0] * np.float32(weights[0]) + small[:, :, 1] * np.float32(weights[1]) \
            + small[:, :, 2] * np.float32(weights[2])
        if scale < 1 and image.size != size:
            y = np.asarray(Image.fromarray(y, "F").resize(size, Image.BILINEAR, box=(0, 0, w / factor, h / factor)))
        r = y - _box(y, 1)
        level = np.sqrt(np.maximum(_box(r * r, 3), 0.0)) + 1.0
        out.append(np.clip(r / level, -3.0, 3.0))
    return out[0], out[1]


def _find_periods(residual: np.ndarray) -> list[tuple[float, float]]:
    """Up to _PERIOD_CANDIDATES (period_y, period_x) pairs, strongest autocorrelation first."""
    import numpy as np

    h, w = residual.shape
    max_p = min(MAX_PERIOD, int(min(h, w) * MAX_PERIOD_FRACTION))
    if max_p <= MIN_PERIOD:
        return []
    spec = np.fft.rfft2(residual - residual.mean())
    ac = np.fft.irfft2(np.abs(spec), s=residual.shape)  # |F| instead of |F|^2: flattens the host spectrum
    ac /= max(float(ac[0, 0]), 1e-12)
    lags = np.arange(MIN_PERIOD, max_p + 1)
    score = ac[lags, 0] + ac[0, lags] + ac[lags, lags] + ac[-lags, lags]
    peaks = [i for i in range(1, len(lags) - 1) if score[i] >= score[i - 1] and score[i] >= score[i + 1]]
    peaks.sort(key=lambda i: -score[i])
    found = []
    for i in peaks:
        py, px = _refine(ac[:, 0], lags[i]), _refine(ac[0, :], lags[i])
        if abs(py - px) <= MAX_ANISOTROPY * lags[i]:
            found.append((py, px))
            if len(found) == _PERIOD_CANDIDATES:
                break
    return found


def _nominal_period(short_side: int) -> float:
    """The tile period at the working size of an image that was neither resized nor cropped."""
    return TILE * cell_size(short_side) * min(1.0, NORM_SHORT_SIDE / short_side)


def _candidates(residual: np.ndarray, nominal: float) -> list[tuple[float, float]]:
    """The autocorrelation's periods and the period an unresized, uncropped image would have.

    Most edits (re-encoding, colour changes) keep the size, and then the nominal period is exact
    even when compression noise hides its autocorrelation peak or shifts it by a fraction of a
    pixel (with only four tiles across a small image, that is enough to misalign the last tile).
    A found period within NOMINAL_TOLERANCE of the nominal one on both axes is replaced by it.
    """
    periods = []
    for found in _find_periods(residual):
        if all(abs(p - nominal) <= NOMINAL_TOLERANCE * nominal for p in found):
            found = (nominal, nominal)
        if found not in periods:
            periods.append(found)
    if min(residual.shape) >= 2 * nominal and (nominal, nominal) not in periods:
        periods.append((nominal, nominal))
    return periods


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


def _fold_axis(a: np.ndarray, period: float, axis: int) -> np.ndarray:
    """Resample `a` (bands, rows, cols) along `axis` (1 or 2) to FOLD samples per period (bilinear) and sum the periods.

    A gather and a reshape-sum (no BLAS: a multi-threaded BLAS on a busy machine costs more than
    the arithmetic here).
    """
    import numpy as np

    n = a.shape[axis]
    samples = int(n * FOLD / period)
    u = (np.arange(samples) + 0.5) * (period / FOLD) - 0.5   # source coordinate of each sample
    lo = np.floor(u)
    frac = (u - lo).astype(np.float32)
    lo = lo.astype(np.int64)
    shape = [1, 1, 1]
    shape[axis] = samples
    frac = frac.reshape(shape)
    out = np.take(a, np.clip(lo, 0, n - 1), axis=axis) * (1.0 - frac) + np.take(a, np.clip(lo + 1, 0, n - 1), axis=axis) * frac
    pad = [(0, 0), (0, 0), (0, 0)]
    pad[axis] = (0, -samples % FOLD)
    out = np.pad(out, pad)
    if axis == 1:
        return out.reshape(len(out), -1, FOLD, out.shape[2]).sum(axis=1)
    return out.reshape(len(out), out.shape[1], -1, FOLD).sum(axis=2)


def _fold(bands: np.ndarray, period: tuple[float, float]) -> np.ndarray:
    """Resample each band (bands, rows, cols) so one tile is FOLD x FOLD samples and sum all tiles onto one."""
    return _fold_axis(_fold_axis(bands, period[0], 1), period[1], 2)


def _decode_at(bands: tuple[np.ndarray, np.ndarray], period: tuple[float, float], key: str) -> WatermarkResult:
    """Try to read the message at one tile period, for each shift hypothesis (see _soft_bits).

    A hypothesis whose shift carries no more bit-correlation energy than noise would
    (SYNC_MIN_RATIO, ZERO_SHIFT_MIN_RATIO) is not decoded: it cannot hold a readable mark, and
    skipping it keeps unmarked images fast.

    Returns:
        The first result that passes the checks, else a "not detected" result.
    """
    result = WatermarkResult(False, None, 0.0, period=round(float(period[1]), 3))
    for soft, sync, minimum in _soft_bits(bands, period, _layout(key)):
        if sync >= minimum:
            result = _decode_soft(soft, period[1], key)
            if result.detected:
                break
    return result


def _decode_soft(soft: np.ndarray, period: float, key: str) -> WatermarkResult:
    """Read the message from the bands' soft bits (2, CODED_BITS); at most 1 + LIST_SIZE CRC checks.

    The luma and chroma copies are first added with equal weight (their whitened levels match)
    and Viterbi-decoded. If that fails the CRC, each band's amplitude and noise are estimated
    against the code that decode produced (mostly right even when the message is wrong), the bands
    are re-weighted by amplitude / noise variance (maximum-ratio combining: WebP and JPEG can wipe
    out the chroma copy, which then only adds noise), and the LIST_SIZE most likely messages are
    checked in turn. That second step runs only when the re-weighted soft bits correlate with
    their code well enough (LIST_MIN_CORRELATION) to possibly be a mark: noise rarely does.
    """
    import numpy as np

    total = soft.sum(axis=0)
    bits = ecc.viterbi(total)
    result = _checked(bits, total, period, key)
    if result.detected:
        return result
    code = 2.0 * ecc.encode(bits) - 1.0
    amplitude = soft @ code / len(code)
    noise = np.mean((soft - amplitude[:, None] * code) ** 2, axis=1)
    weighted = (np.maximum(amplitude, 0.0) / np.maximum(noise, 1e-12)) @ soft
    if not np.any(weighted) or _correlation(weighted, code) < LIST_MIN_CORRELATION:
        return result
    for bits in ecc.list_viterbi(weighted, LIST_SIZE):
        candidate = _checked(bits, weighted, period, key)
        if candidate.detected:
            return candidate
    return result


def _soft_bits(bands: tuple[np.ndarray, np.ndarray], period: tuple[float, float],
               layout: _Layout) -> list[tuple[np.ndarray, float, float]]:
    """Shift hypotheses: each band's soft bits (2, CODED_BITS: luma, chroma), a sync ratio and its gate.

    Two hypotheses for the tile's shift (from cropping): the shift where the bit correlations
    carry the most energy whatever their signs (all shifts at half resolution by FFT), and no
    shift at all, which is what an uncropped image has: near the noise floor (WebP, JPEG on busy
    textures) the energy search can miss, while the message still decodes at the right shift.
    Each is refined over the 3x3 full-resolution shifts around it. The sync ratio is the
    hypothesis's energy over the mean energy of all shifts (about 1 for noise at a given shift,
    about 1.25 for the maximum over all shifts); the gate is the ratio it must reach to be decoded.
    """
    import numpy as np

    # The chroma copy of the tile is shifted by half a tile (see embed): align the folds first.
    folds = _notch(_fold(np.stack(bands), period))
    folds[1] = np.roll(folds[1], (FOLD // 2, FOLD // 2), axis=(0, 1))
    half = FOLD // 2
    coarse = np.fft.rfft2((folds[0] + folds[1]).reshape(half, 2, half, 2).sum(axis=(1, 3))).astype(np.complex64)
    corr = np.fft.irfft2(coarse[None] * layout.spectra, s=(half, half))
    energy = np.einsum("bij,bij->ij", corr, corr)
    reference = max(float(energy.mean()), 1e-12)
    cy, cx = np.unravel_index(int(np.argmax(energy)), (half, half))
    centres = [((2 * int(cy), 2 * int(cx)), float(energy[cy, cx]) / reference, SYNC_MIN_RATIO)]
    if any(min(c, FOLD - c) > 1 for c in centres[0][0]):  # the zero shift is not among the refined ones
        centres.append(((0, 0), float(energy[0, 0]) / reference, ZERO_SHIFT_MIN_RATIO))
    hypotheses = []
    for centre, ratio, minimum in centres:
        soft = _bit_correlations(folds, centre, layout)         # (2 bands, 3 x 3 shifts, CODED_BITS)
        best = int(np.argmax(np.sum(soft.sum(axis=0) ** 2, axis=-1)))
        hypotheses.append((soft[:, best], ratio, minimum))
    return hypotheses


def _bit_correlations(folds: np.ndarray, centre: tuple[int, int], layout: _Layout) -> np.ndarray:
    """Correlation of each fold with every coded bit's pattern, at the 3x3 shifts around `centre`.

    A bit's pattern is U @ M @ U.T (M: the bit's signed cells, U: the bilinear upsampling), so its
    correlation with a fold F shifted by (sy, sx) is the sum of M's cells in Uy.T @ F @ Ux, with
    U's rows rolled by the shift: two small matrix products to the cell grid (all nine shifts at
    once), then a signed sum per bit, instead of 258 full-resolution dot products per shift.

    Returns:
        (bands, 9, CODED_BITS) float64, shifts in row-major order of (dy, dx) in (-1, 0, 1).
    """
    import numpy as np

    up = layout.upsample
    sy, sx = centre
    rows = np.concatenate([np.roll(up, sy + d, axis=0) for d in (-1, 0, 1)], axis=1)   # (FOLD, 3 * TILE)
    cols = np.concatenate([np.roll(up, sx + d, axis=0) for d in (-1, 0, 1)], axis=1)
    grid = rows.T @ folds.astype(np.float32) @ cols                                     # (bands, 3 * TILE, 3 * TILE)
    cells = grid.reshape(len(folds), 3, TILE, 3, TILE).transpose(0, 1, 3, 2, 4).reshape(len(folds), 9, -1)
    signed = cells.astype(np.float64) * layout.signs.reshape(-1)
    return np.add.reduceat(signed[..., layout.cell_order], layout.bit_starts, axis=-1)


def _checked(bits: np.ndarray, soft: np.ndarray, period: float, key: str) -> WatermarkResult:
    """The result for one decoded message: detected when its CRC matches and enough coded bits agree."""
    import numpy as np

    payload = ecc.check_message(bits, key.encode())
    if payload is not None:
        agreement = float(np.mean((soft > 0) == (ecc.encode(bits) > 0)))
        if agreement >= MIN_AGREEMENT:
            return WatermarkResult(True, payload.hex(), round(agreement, 4), period=round(float(period), 3))
    return WatermarkResult(False, None, 0.0, period=round(float(period), 3))


def _correlation(soft: np.ndarray, code: np.ndarray) -> float:
    """Correlation coefficient of soft values with a ±1 code.

    1.0 when noiseless; about 0.55 for pure noise and the code Viterbi fits to it.
    """
    import numpy as np

    return float(np.mean(soft * code) / max(float(np.sqrt(np.mean(soft * soft))), 1e-12))


def _notch(folds: np.ndarray) -> np.ndarray:
    """Drop the folds' (..., FOLD, FOLD) DFT bins where JPEG/WebP block grids land.

    Block grids fold into patterns periodic with 4, 8 or 16 samples; those bins (both indices
    multiples of BLOCK_NOTCH) hold 1/16 of the tile's energy, and without them the grid cannot pose
    as the tile's shift. They are exactly the part periodic with FOLD / BLOCK_NOTCH samples on both
    axes, which is the mean over the BLOCK_NOTCH x BLOCK_NOTCH sub-tiles: subtract it (no FFT needed).
    """
    sub = FOLD // BLOCK_NOTCH
    blocks = folds.reshape(*folds.shape[:-2], BLOCK_NOTCH, sub, BLOCK_NOTCH, sub)
    return (blocks - blocks.mean(axis=(-4, -2), keepdims=True)).reshape(folds.shape)
