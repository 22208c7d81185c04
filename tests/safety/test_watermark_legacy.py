"""The numpy reader of the legacy SD v1 / SDXL dwtDct marks agrees bit for bit with invisible-watermark."""

from __future__ import annotations

import numpy as np
import pytest

from sdguard import watermark_legacy as legacy

SDXL_BITS = [int(b) for b in format(0xB3EC907BB19E, "048b")]


def photo(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = rng.uniform(40, 200, 3) + rng.uniform(-50, 50, 3) * (xx + yy)[..., None] + rng.normal(0, 25, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(256, 256), (515, 770)])
def test_matches_invisible_watermark_bit_for_bit(shape):
    imwatermark = pytest.importorskip("imwatermark")
    image = photo(sum(shape), *shape)
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bits", SDXL_BITS)
    marked = np.ascontiguousarray(encoder.encode(np.ascontiguousarray(image[:, :, ::-1]), "dwtDct")[:, :, ::-1])
    for candidate in (image, marked):
        for length in (48, 136):
            reference = imwatermark.WatermarkDecoder("bits", length).decode(
                np.ascontiguousarray(candidate[:, :, ::-1]), "dwtDct")
            assert np.array_equal(legacy.decode_bits(candidate, length), np.asarray(reference, dtype=np.uint8))
    assert np.mean(legacy.decode_bits(marked, 48) == SDXL_BITS) >= 0.8  # dwtDct reads 80-90 % back
    assert np.mean(legacy.decode_bits(image, 48) == SDXL_BITS) < 0.8


def test_u_channel_matches_opencv_on_every_colour():
    cv2 = pytest.importorskip("cv2")
    v = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)
    reference = cv2.cvtColor(np.ascontiguousarray(rgb[:, :, ::-1]), cv2.COLOR_BGR2YUV)[:, :, 1]
    assert np.array_equal(legacy._opencv_u(rgb), reference)


def test_rejects_small_or_malformed_input():
    with pytest.raises(ValueError, match="pixels"):
        legacy.decode_bits(np.zeros((200, 300, 3), np.uint8), 48)
    with pytest.raises(ValueError, match="uint8"):
        legacy.decode_bits(np.zeros((300, 300, 3), np.float32), 48)
