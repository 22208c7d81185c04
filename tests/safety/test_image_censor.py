"""Censor geometry and styles: boxes with margins, clipping, whole-image styles, never in place."""

from __future__ import annotations

import numpy as np
import pytest

from sdguard import Action, load_policy
from sdguard.censor import CENSOR_STYLES, censor_boxes, censor_image, expand_box
from sdguard.image_guard import check_image
from sdguard.image_types import Detection, Region

from _image_fakes import NUDE_BOX, FakeDetector, fake_backends, marked_image


def noisy(size=200, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def changed(a, b):
    return np.any(a != b, axis=2)


@pytest.mark.parametrize("style", ["pixelate", "blur", "fill"])
def test_region_styles_change_only_the_box_plus_margin(style):
    image = noisy()
    before = image.copy()
    out = censor_image(image, [(50, 60, 90, 100)], style, margin=0.25)  # 40x40 box, 10 px margin
    assert np.array_equal(image, before)  # input untouched
    mask = changed(out, image)
    ys, xs = np.nonzero(mask)
    assert xs.min() >= 40 and xs.max() < 100 and ys.min() >= 50 and ys.max() < 110
    assert mask[50:110, 40:100].mean() > 0.9  # the whole expanded box is hidden


def test_box_at_the_edge_is_clipped():
    out = censor_image(noisy(), [Region("X", 0.9, (180, 180, 200, 200))], "fill", margin=0.5)
    assert out.shape == (200, 200, 3)
    assert (out[170:, 170:] == 128).all() and not (out[:160, :160] == 128).all()
    assert expand_box((0, 0, 10, 10), 0.5, 12, 12) == (0, 0, 12, 12)


def test_pixelate_leaves_few_distinct_blocks():
    out = censor_image(noisy(), [(0, 0, 160, 160)], "pixelate", margin=0)
    assert len(np.unique(out[:160, :160].reshape(-1, 3), axis=0)) <= 8 * 8


@pytest.mark.parametrize("style", ["blur_image", "replace"])
def test_whole_image_styles(style):
    image = noisy()
    out = censor_image(image, [(0, 0, 5, 5)], style)
    assert changed(out, image).mean() > 0.9
    if style == "replace":
        assert (out == 128).all()


def test_verdict_driven_censor():
    policy = load_policy("public")
    nude = marked_image(age=35, nude=True)
    verdict = check_image(nude, policy, backends=fake_backends())
    assert verdict.action is Action.CENSOR and censor_boxes(verdict) == [NUDE_BOX]
    out = censor_image(nude, verdict, "fill", margin=0)
    x0, y0, x1, y1 = NUDE_BOX
    assert (out[y0:y1, x0:x1] == 128).all() and np.array_equal(out[150:, 150:], nude[150:, 150:])

    allowed = check_image(marked_image(age=35), policy, backends=fake_backends())
    assert np.array_equal(censor_image(nude, allowed), nude)

    blocked = check_image(marked_image(age=9, nude=True), policy, backends=fake_backends())
    assert (censor_image(nude, blocked, "pixelate") == 128).all()  # blocked: replaced, never shown


def test_censor_verdict_without_boxes_blurs_everything():
    policy = load_policy("public")
    image = noisy(256)
    image[0, 0, 0] = 30
    nsfw = FakeDetector("opennsfw", lambda im: Detection("opennsfw", {"sexual": 0.99}))
    backends = fake_backends(opennsfw=nsfw)
    verdict = check_image(image, policy, backends=backends)
    assert verdict.action is Action.CENSOR and censor_boxes(verdict) == []
    assert changed(censor_image(image, verdict), image).mean() > 0.9


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown censor style 'paint'"):
        censor_image(noisy(), [], "paint")
    with pytest.raises(ValueError, match="margin"):
        censor_image(noisy(), [], "blur", margin=-1)
    with pytest.raises(ValueError, match="RGB uint8"):
        censor_image(np.zeros((4, 4)), [])


def test_policy_choices_match_the_style_registry():
    from sdguard.policy import _builtin_base

    assert tuple(_builtin_base()["choices"]["image.censor_style"]) == CENSOR_STYLES
    assert load_policy("public").section("image")["censor_style"] in CENSOR_STYLES


@pytest.mark.parametrize("style", ["pixelate", "blur"])
@pytest.mark.parametrize("side", [3, 4, 8, 10, 12, 15, 16, 24])
def test_small_boxes_are_hidden_too(style, side):
    # Pixelate used 1-px cells below 16 px (the box came out as it went in); blur did not shrink
    # a box under 6 px.
    image = noisy(64)
    out = censor_image(image, [(20, 20, 20 + side, 20 + side)], style, margin=0)
    box = (slice(20, 20 + side), slice(20, 20 + side))
    assert changed(out[box], image[box]).mean() > 0.5
    if style == "pixelate":  # cells of 2 px or more, at most 8 across
        colours = len(np.unique(out[box].reshape(-1, 3), axis=0))
        assert colours <= min(8, side // 2) ** 2
    else:  # shrunk, not just smoothed: little of the noise's contrast is left
        assert out[box].astype(float).std() < 0.3 * image[box].astype(float).std()
