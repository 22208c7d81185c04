"""sdguard's invisible watermark: round trip, attacks, unmarked images, ECC/CRC, input checks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sdguard import watermark as wm
from sdguard import watermark_detect as wd
from sdguard import watermark_ecc as ecc

PAYLOAD = bytes.fromhex("b3ec907bb19e")


def scene(seed: int, h: int, w: int) -> np.ndarray:
    """A small natural-ish test image: gradient, smooth texture, a few shapes, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = rng.uniform(60, 190, 3) + rng.uniform(-60, 60, 3) * (xx + yy)[..., None]
    f2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2
    tex = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(h, w))) / np.maximum(f2, 1e-6) ** 0.9))
    img += (tex / tex.std() * 20)[..., None]
    for _ in range(4):
        y0, x0 = int(rng.integers(0, h - 40)), int(rng.integers(0, w - 40))
        img[y0:y0 + int(rng.integers(20, h // 3)), x0:x0 + int(rng.integers(20, w // 3))] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 2, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def recode(a: np.ndarray, fmt: str, **kw: object) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **kw)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def marked_1024() -> tuple[np.ndarray, np.ndarray]:
    original = scene(1, 1024, 1024)
    return original, wm.embed(original, PAYLOAD)


def test_round_trip_reports_payload_and_confidence(marked_1024):
    _, marked = marked_1024
    result = wm.detect(marked)
    assert result.detected and result.payload == PAYLOAD.hex()
    assert result.confidence > 0.9
    assert result.to_dict()["scheme"] == wm.SCHEME


@pytest.mark.parametrize("shape", [(256, 256), (512, 768), (832, 1216)])
def test_round_trip_at_other_sizes(shape):
    marked = wm.embed(scene(2, *shape), PAYLOAD)
    assert wm.detect(marked).payload == PAYLOAD.hex()


def test_quality_targets_at_1024(marked_1024):
    original, marked = marked_1024
    mse = np.mean((original.astype(np.float64) - marked) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) >= 40.0
    metrics = pytest.importorskip("skimage.metrics")
    assert metrics.structural_similarity(original, marked, channel_axis=2, data_range=255) >= 0.98



@pytest.mark.parametrize("shape,cell", [((64, 80), 4.0), ((45, 70), 4.5), ((37, 50), 2.34375)])
def test_rendering_matches_pil_bilinear_and_its_energy(shape, cell):
    # The embedder renders the cell grid itself (numpy, blockwise); it must stay PIL's BILINEAR
    # resampling (pixel centre (i + 0.5) at (i + 0.5) / cell, edges clamped), and the energy it
    # computes on the grid for the PSNR cap must be the rendered image's sum of squares.
    h, w = shape
    rows, cols = int(np.ceil(h / cell)) + 1, int(np.ceil(w / cell)) + 1
    rng = np.random.default_rng(3)
    grids = [rng.normal(0, 5, (rows, cols)).astype(np.float32) for _ in range(3)]
    taps = wm._bilinear_taps(h, cell, rows), wm._bilinear_taps(w, cell, cols)
    base = np.full((h, w, 3), 128, np.uint8)
    rendered = wm._add_rendered(base, grids, *taps).astype(np.float64) - 128
    pil = np.stack([np.asarray(Image.fromarray(g, "F").resize((w, h), Image.BILINEAR, box=(0, 0, w / cell, h / cell)))
                    for g in grids], axis=-1)
    assert np.abs(rendered - pil).max() <= 0.5 + 1e-3  # only the rounding to whole levels
    grams = wm._gram(taps[0], rows), wm._gram(taps[1], cols)
    for grid, channel in zip(grids, np.moveaxis(pil, -1, 0)):
        assert wm._rendered_energy(grid, grams) == pytest.approx(float(np.sum(channel.astype(np.float64) ** 2)), rel=1e-5)

@pytest.mark.parametrize("attack", ["jpeg70", "resize0.5", "crop80", "brightness+20", "contrast-20", "webp"])
def test_survives_required_attacks(marked_1024, attack):
    _, m = marked_1024
    h, w = m.shape[:2]
    attacked = {
        "jpeg70": lambda: recode(m, "JPEG", quality=70),
        "resize0.5": lambda: np.asarray(Image.fromarray(m).resize((w // 2, h // 2), Image.BICUBIC)),
        "crop80": lambda: m[37:37 + int(h * 0.894), 61:61 + int(w * 0.894)],
        "brightness+20": lambda: np.clip(m * 1.2, 0, 255).astype(np.uint8),
        "contrast-20": lambda: np.clip((m - m.mean()) * 0.8 + m.mean(), 0, 255).astype(np.uint8),
        "webp": lambda: recode(m, "WEBP", quality=80),
    }[attack]()
    assert wm.detect(attacked).payload == PAYLOAD.hex()


def test_chroma_copy_alone_carries_the_mark_on_a_grey_image():
    # Grey texture puts all its energy in luma; the half-tile-shifted Cr copy reads on its own.
    grey = scene(7, 512, 512).mean(axis=2).astype(np.uint8)
    marked = wm.embed(np.repeat(grey[:, :, None], 3, axis=2), PAYLOAD)
    luma, chroma = wd._whitened(marked)
    nominal = wd._nominal_period(512)
    assert wd._decode_at((np.zeros_like(luma), chroma), (nominal, nominal), wm.DEFAULT_KEY).payload == PAYLOAD.hex()


def test_saturated_colour_keeps_its_mark_through_jpeg():
    # One channel at 0 everywhere: only that channel fades, the others carry the mark.
    image = scene(5, 512, 512)
    image[:, :, 2] = 0
    marked = wm.embed(image, PAYLOAD)
    assert wm.detect(recode(marked, "JPEG", quality=70)).payload == PAYLOAD.hex()


def test_false_detection_bound_is_stated():
    assert wd.MAX_CRC_CHECKS == wd.MAX_HYPOTHESES * (1 + wd.LIST_SIZE)
    assert wd.MAX_CRC_CHECKS * 2 ** -ecc.CRC_BITS <= 1e-6


def test_detector_checks_at_most_the_stated_number_of_messages(monkeypatch):
    # With both gates open every hypothesis is decoded and listed: the CRC count is the bound's worst case.
    monkeypatch.setattr(wd, "SYNC_MIN_RATIO", 0.0)
    monkeypatch.setattr(wd, "ZERO_SHIFT_MIN_RATIO", 0.0)
    monkeypatch.setattr(wd, "LIST_MIN_CORRELATION", -1.0)
    calls = []
    real_check = ecc.check_message
    monkeypatch.setattr(ecc, "check_message", lambda bits, key: calls.append(1) or real_check(bits, key))
    for image in (scene(11, 512, 640), scene(12, 300, 900)):
        calls.clear()
        assert not wm.detect(image).detected
        assert wd.MAX_HYPOTHESES < len(calls) <= wd.MAX_CRC_CHECKS


def test_list_decoder_returns_distinct_messages_best_first_and_beats_plain_viterbi():
    rng = np.random.default_rng(4)
    code = 2.0 * ecc.encode(ecc.message_bits(PAYLOAD, b"k")) - 1.0
    plain = listed = 0
    for _ in range(40):
        soft = 0.8 * code + rng.normal(size=len(code))   # correlation ~0.62: plain Viterbi often fails
        messages = ecc.list_viterbi(soft, 8)
        assert len({m.tobytes() for m in messages}) == len(messages) == 8
        assert np.array_equal(messages[0], ecc.viterbi(soft))
        plain += ecc.check_message(messages[0], b"k") == PAYLOAD
        listed += any(ecc.check_message(m, b"k") == PAYLOAD for m in messages)
    assert listed >= plain + 5


def test_reweighting_discounts_a_band_that_carries_only_noise():
    # WebP/JPEG can leave the chroma copy as pure noise; with equal weights it drowns the luma copy.
    rng = np.random.default_rng(8)
    code = 2.0 * ecc.encode(ecc.message_bits(PAYLOAD, wm.DEFAULT_KEY.encode())) - 1.0
    equal = weighted = 0
    for _ in range(20):
        soft = np.stack([code + rng.normal(size=len(code)), rng.normal(0, 1.2, len(code))])   # luma, chroma
        equal += ecc.check_message(ecc.viterbi(soft.sum(axis=0)), wm.DEFAULT_KEY.encode()) == PAYLOAD
        weighted += wd._decode_soft(soft, 32.0, wm.DEFAULT_KEY).payload == PAYLOAD.hex()
    assert equal <= 3 and weighted >= 10


def test_uncropped_zero_shift_is_a_hypothesis_of_its_own():
    layout = wm._layout(wm.DEFAULT_KEY)
    rng = np.random.default_rng(6)
    bands = (rng.normal(size=(256, 256)).astype(np.float32), rng.normal(size=(256, 256)).astype(np.float32))
    hypotheses = wd._soft_bits(bands, (32.0, 32.0), layout)
    # On noise the energy search lands away from zero, so the zero shift is tried on its own, with its own gate.
    assert [gate for _, _, gate in hypotheses] == [wd.SYNC_MIN_RATIO, wd.ZERO_SHIFT_MIN_RATIO]
    assert all(soft.shape == (2, ecc.CODED_BITS) and ratio > 0 for soft, ratio, _ in hypotheses)
    assert hypotheses[0][1] >= hypotheses[1][1]   # the searched shift has the most energy


def test_candidates_keep_the_nominal_period_unless_both_axes_match(monkeypatch):
    residual = np.zeros((256, 320), np.float32)
    monkeypatch.setattr(wd, "_find_periods", lambda r: [(63.03, 63.48), (47.4, 47.4)])
    assert wd._candidates(residual, 64.0) == [(63.03, 63.48), (47.4, 47.4), (64.0, 64.0)]
    monkeypatch.setattr(wd, "_find_periods", lambda r: [(63.8, 64.3)])
    assert wd._candidates(residual, 64.0) == [(64.0, 64.0)]


def test_cell_grid_correlation_and_notch_match_their_full_resolution_definitions():
    layout = wm._layout(wm.DEFAULT_KEY)
    up = wm._interp_matrix(wm.FOLD, wm.FOLD / wm.TILE)
    masks = np.zeros((ecc.CODED_BITS, wm.TILE, wm.TILE))
    masks[layout.bit_of_cell, np.arange(wm.TILE)[:, None], np.arange(wm.TILE)[None, :]] = layout.signs
    patterns = (up @ masks @ up.T).reshape(ecc.CODED_BITS, -1)
    folds = np.random.default_rng(7).normal(size=(2, wm.FOLD, wm.FOLD)).astype(np.float32)
    centre = (10, 53)
    fast = wd._bit_correlations(folds, centre, layout)
    for i, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
        shifted = np.roll(folds[1], (-(centre[0] + dy), -(centre[1] + dx)), axis=(0, 1))
        np.testing.assert_allclose(fast[1, i], patterns @ shifted.reshape(-1), atol=1e-3)
    spectrum = np.fft.rfft2(folds)
    spectrum[..., ::wd.BLOCK_NOTCH, ::wd.BLOCK_NOTCH] = 0.0
    np.testing.assert_allclose(wd._notch(folds), np.fft.irfft2(spectrum, s=folds.shape[1:]), atol=1e-5)


def test_unmarked_images_and_crops_are_not_marked():
    for seed in range(6):
        image = scene(100 + seed, 512, 640)
        for candidate in (image, image[50:400, 30:500], np.full((300, 300, 3), 128, np.uint8)):
            result = wm.detect(candidate)
            assert not result.detected and result.payload is None and result.confidence == 0.0


def test_other_key_does_not_read_the_mark(marked_1024):
    _, marked = marked_1024
    assert not wm.detect(marked, key="someone-else").detected


def test_tiny_images_are_simply_not_marked():
    assert not wm.detect(np.zeros((40, 60, 3), np.uint8)).detected


def test_embed_rejects_small_or_malformed_input():
    with pytest.raises(ValueError, match="at least 256"):
        wm.embed(np.zeros((200, 400, 3), np.uint8), PAYLOAD)
    with pytest.raises(ValueError, match="uint8"):
        wm.embed(np.zeros((300, 300, 3), np.float32), PAYLOAD)
    with pytest.raises(ValueError, match="6 bytes"):
        wm.embed(np.zeros((300, 300, 3), np.uint8), b"abc")


@pytest.mark.parametrize("text,expected", [("0xB3EC907BB19E", "b3ec907bb19e"), ("1", "000000000001")])
def test_parse_payload(text, expected):
    assert wm.parse_payload(text).hex() == expected


@pytest.mark.parametrize("text", ["", "xyz", "1234567890abc"])
def test_parse_payload_rejects_bad_hex(text):
    with pytest.raises(ValueError):
        wm.parse_payload(text)


def test_viterbi_corrects_errors_and_crc_rejects_garbage():
    rng = np.random.default_rng(3)
    code = ecc.encode(ecc.message_bits(PAYLOAD, b"k"))
    assert len(code) == ecc.CODED_BITS
    soft = 2.0 * code - 1.0
    flipped = soft.copy()
    flipped[rng.choice(len(code), 20, replace=False)] *= -1  # ~8 % hard errors
    assert ecc.check_message(ecc.viterbi(flipped), b"k") == PAYLOAD
    assert ecc.check_message(ecc.viterbi(soft), b"other-key") is None
    garbage = [ecc.check_message(ecc.viterbi(rng.normal(size=len(code))), b"k") for _ in range(50)]
    assert garbage == [None] * 50


def test_trustmark_backend_says_what_is_missing(monkeypatch):
    import builtins

    from sdguard import watermark_trustmark as tm
    from sdguard.errors import GuardUnavailable

    real_import = builtins.__import__

    def no_trustmark(name, *args, **kwargs):
        if name == "trustmark" or name.startswith("trustmark."):
            raise ImportError("No module named 'trustmark'")
        return real_import(name, *args, **kwargs)

    tm._model.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_trustmark)
    with pytest.raises(GuardUnavailable, match="pip install trustmark"):
        tm.detect(np.zeros((256, 256, 3), np.uint8))
    tm._model.cache_clear()
