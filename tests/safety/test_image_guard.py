"""The image stage's logic, on scripted backends: ensemble, batch independence, fail closed,
minor ∧ sexual, tiling, explanations."""

from __future__ import annotations

import numpy as np
import pytest

from sdguard import Action, load_policy
from sdguard.image_backends import get_backend
from sdguard.image_guard import as_rgb, check_image, check_images
from sdguard.image_tiles import is_duplicate, merge_regions, tile_grid
from sdguard.image_types import Detection, Region
from sdguard.verdict import GUARD_UNAVAILABLE, MALFORMED_INPUT

from _image_fakes import FACE_BOX, NUDE_BOX, FakeDetector, fake_backends, marked_image

TILES = {"tile_min_side": 1024, "tile_size": 640, "tile_overlap": 0.25, "max_tiles_per_side": 3}


@pytest.fixture
def policy_file(tmp_path):
    def make(body: str, extends: str = "public"):
        path = tmp_path / "p.toml"
        path.write_text(f'extends = "{extends}"\n{body}\n')
        return load_policy(path)
    return make


def test_clean_image_is_allowed_and_explained():
    v = check_image(marked_image(age=35), load_policy("public"), backends=fake_backends())
    assert v.action is Action.ALLOW
    d = v.to_dict()
    assert d["faces"] == [{"box": list(FACE_BOX), "score": 0.8, "age": 35.0, "age_confidence": 0.98}]
    assert d["regions"] == []
    assert d["scores"]["opennsfw"] == {"sexual": 0.1}
    assert d["size"] == [256, 256] and d["tiles"] == 0


def test_nudity_is_censored_under_public_with_its_region():
    v = check_image(marked_image(age=35, nude=True), load_policy("public"), backends=fake_backends())
    assert v.action is Action.CENSOR and v.codes == ("sexual",)
    assert v.details["regions"] == [{"label": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": list(NUDE_BOX),
                                     "category": "sexual"}]
    assert "FEMALE_BREAST_EXPOSED" in v.message and "nudenet 0.90 ≥ 0.50" in v.message


def test_adult_profile_allows_nudity_of_adults():
    v = check_image(marked_image(age=35, nude=True), load_policy("adult"), backends=fake_backends())
    assert v.action is Action.ALLOW


@pytest.mark.parametrize("profile", ["adult", "public", "classroom"])
def test_minor_face_plus_nudity_blocks_in_every_profile(profile):
    v = check_image(marked_image(age=9, nude=True), load_policy(profile), backends=fake_backends())
    assert v.action is Action.BLOCK
    assert "minor_sexual" in v.codes
    assert "estimated age 9" in v.message


def test_minor_face_alone_is_allowed():
    v = check_image(marked_image(age=9), load_policy("public"), backends=fake_backends())
    assert v.action is Action.ALLOW
    assert v.categories["minor"] == pytest.approx(0.95)


def test_batch_items_are_judged_independently():
    images = [marked_image(age=35), marked_image(age=9, nude=True), marked_image(age=35, nude=True),
              marked_image(age=9)]
    verdicts = check_images(images, load_policy("public"), backends=fake_backends())
    assert [v.action for v in verdicts] == [Action.ALLOW, Action.BLOCK, Action.CENSOR, Action.ALLOW]
    assert verdicts[3].details["regions"] == [] and verdicts[0].details["faces"][0]["age"] == 35.0


def test_a_required_backend_that_fails_to_load_blocks_every_image(monkeypatch):
    backends = fake_backends()
    del backends["opennsfw"]
    monkeypatch.setattr("sdguard.image_backends.LOADERS", {"opennsfw": ".nowhere:load"})
    monkeypatch.setattr("sdguard.image_backends._cache", {})  # another test may have loaded the real one
    verdicts = check_images([marked_image(), marked_image()], load_policy("public"), backends=backends)
    for v in verdicts:
        assert v.action is Action.BLOCK and v.codes == (GUARD_UNAVAILABLE,)
        assert "opennsfw" in v.message


def test_a_required_backend_that_throws_blocks_the_image():
    backends = fake_backends(nudenet=FakeDetector("nudenet", fail=True))
    v = check_image(marked_image(), load_policy("adult"), backends=backends)
    assert v.action is Action.BLOCK and v.codes == (GUARD_UNAVAILABLE,)
    assert "image backend 'nudenet'" in v.message and "onnxruntime exploded" in v.message


def test_a_throwing_backend_blocks_only_the_images_it_failed_on():
    def flaky(image):
        if image[0, 0, 0] == 66:
            raise RuntimeError("bad frame")
        return Detection("opennsfw", {"sexual": 0.1})

    backends = fake_backends(opennsfw=FakeDetector("opennsfw", flaky))
    verdicts = check_images([marked_image(35), marked_image(66), marked_image(35)], load_policy("public"),
                            backends=backends)
    assert [v.action for v in verdicts] == [Action.ALLOW, Action.BLOCK, Action.ALLOW]


def test_an_optional_backend_that_fails_is_skipped_with_a_note(policy_file):
    policy = policy_file('[image]\nrequired = ["nudenet", "age"]')
    backends = fake_backends(opennsfw=FakeDetector("opennsfw", fail=True))
    v = check_image(marked_image(age=35, nude=True), policy, backends=backends)
    assert v.action is Action.CENSOR
    assert "onnxruntime exploded" in v.details["skipped"]["opennsfw"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "0.9"])
def test_a_backend_score_that_is_not_a_finite_number_fails_that_backend(policy_file, bad):
    # NaN compares false with every threshold: taken as a score, it would pass the image.
    nan_sexual = FakeDetector("opennsfw", lambda im: Detection("opennsfw", {"sexual": bad}))
    v = check_image(marked_image(age=35), load_policy("public"), backends=fake_backends(opennsfw=nan_sexual))
    assert v.blocked and v.codes == (GUARD_UNAVAILABLE,) and "image backend 'opennsfw'" in v.message
    optional = policy_file('[image]\nrequired = ["nudenet", "age"]')
    v = check_image(marked_image(age=35, nude=True), optional, backends=fake_backends(opennsfw=nan_sexual))
    assert v.action is Action.CENSOR and "finite score" in v.details["skipped"]["opennsfw"]


@pytest.mark.parametrize("only", [[], ["nosuch"], ["opennsfw"]])
def test_an_image_no_backend_judged_is_blocked(policy_file, only):
    # Nothing named, an unknown name, or an optional backend that fails: nothing looked at the image.
    policy = policy_file('[image]\nrequired = ["nudenet", "age"]')
    backends = fake_backends(opennsfw=FakeDetector("opennsfw", fail=True))
    [v] = check_images([marked_image(age=35)], policy, backends=backends, only=only)
    assert v.blocked and v.codes == (GUARD_UNAVAILABLE,) and "no image backend ran" in v.message


def test_an_unknown_required_backend_fails_closed(policy_file, monkeypatch):
    # Policy files naming unknown backends are refused at load (test_policy); a registry that
    # differs at run time (a plugin gone) must still fail closed.
    from sdguard.image_backends import LOADERS

    monkeypatch.setattr("sdguard.policy.LOADERS", {**LOADERS, "nosuch": ".nowhere:load"})
    policy = policy_file('[image]\nbackends = ["nudenet", "nosuch"]\nrequired = ["nudenet", "age", "nosuch"]')
    v = check_image(marked_image(), policy, backends=fake_backends())
    assert v.blocked and "unknown image backend 'nosuch'" in v.message


def test_only_backends_with_a_threshold_feed_a_category(policy_file):
    # opennsfw says 0.95 sexual; with its threshold at 1.0 it never fires alone.
    scores = {"sexual": 0.95, "violence": 0.99}
    backends = fake_backends(opennsfw=FakeDetector("opennsfw", lambda im: Detection("opennsfw", scores)))
    assert check_image(marked_image(), load_policy("public"), backends=backends).action is Action.CENSOR
    strict = policy_file("[categories.sexual]\nthresholds = { opennsfw = 1.0 }")
    v = check_image(marked_image(), strict, backends=backends)
    assert v.action is Action.ALLOW
    assert "violence" not in v.categories  # no threshold for (violence, opennsfw): not fed


def test_small_faces_get_no_age(policy_file):
    policy = policy_file("[image]\nmin_face_px = 64")  # FACE_BOX is 50 px
    backends = fake_backends()
    v = check_image(marked_image(age=9, nude=True), policy, backends=backends)
    assert backends["age"].seen_faces == [()]
    assert v.details["faces"] == [{"box": list(FACE_BOX), "score": 0.8}]
    assert v.codes == ("sexual",)


def test_preview_stage_is_passed_through():
    v = check_image(marked_image(), load_policy("public"), stage="preview", backends=fake_backends())
    assert v.stage == "preview"


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.full((4, 4, 3), 2.0), "not an image", np.zeros((2, 2, 3), complex)])
def test_malformed_input_blocks_with_its_code(bad):
    v = check_image(bad, load_policy("adult"), backends=fake_backends())
    assert v.blocked and v.codes == (MALFORMED_INPUT,)


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="stage 'bogus' is not one of"):
        check_image(marked_image(), load_policy("public"), stage="bogus", backends=fake_backends())


def test_as_rgb_converts_common_layouts():
    assert as_rgb(np.zeros((3, 4), np.uint8)).shape == (3, 4, 3)
    assert as_rgb(np.zeros((3, 4, 4), np.uint8)).shape == (3, 4, 3)
    assert as_rgb(np.full((2, 2, 3), 1.0, np.float32))[0, 0, 0] == 255


def test_as_rgb_scales_pil_images_wider_than_8_bits():
    # convert("RGB") clips these at 255: 16-bit grey came out almost white, float grey black.
    from PIL import Image

    ramp16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    for image in (Image.fromarray(ramp16), Image.fromarray(ramp16.astype(np.int32))):  # I;16 and I
        assert image.mode in ("I;16", "I")
        pixels = as_rgb(image)
        assert pixels.shape == (64, 64, 3) and pixels[0, 0, 0] == 0 and pixels[-1, -1, 0] == 255
        assert abs(pixels.mean() - 127.5) < 1
    assert as_rgb(Image.fromarray(np.full((4, 4), 0.5, np.float32)))[0, 0, 0] == 128
    assert as_rgb(Image.fromarray(np.full((4, 4), 200, np.int32)))[0, 0, 0] == 200  # 8-bit values in I
    v = check_image(Image.fromarray(np.full((4, 4), np.nan, np.float32)), load_policy("public"),
                    backends=fake_backends())
    assert v.blocked and v.codes == (MALFORMED_INPUT,)


def test_tile_grid_covers_the_image_with_overlap():
    assert tile_grid(512, 512, TILES) == []
    assert tile_grid(2048, 2048, dict(TILES, tile_min_side=0)) == []
    for width, height in [(1024, 1024), (2048, 2048), (1536, 640), (4096, 1024)]:
        tiles = tile_grid(width, height, TILES)
        covered = np.zeros((height, width), bool)
        for x0, y0, x1, y1 in tiles:
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        xs = sorted({(t[0], t[2]) for t in tiles})
        assert all(a[1] > b[0] for a, b in zip(xs, xs[1:]))  # neighbours overlap
    assert len(tile_grid(2048, 2048, TILES)) == 9  # capped at 3 per side


def test_tiled_detections_map_back_to_image_pixels(policy_file):
    seen = []

    def small_thing(image):
        seen.append(image.shape[:2])
        # the detector only "sees" the 30-px object when the crop is small enough (a tile)
        if max(image.shape[:2]) <= 700 and image[900 % image.shape[0], 0, 0] != 1:
            ys, xs = np.nonzero(image[:, :, 1] == 250)
            if len(xs):
                box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                return Detection("nudenet", {"sexual": 0.8}, (Region("ANUS_EXPOSED", 0.8, box, "sexual"),))
        return Detection("nudenet")

    image = np.zeros((1024, 1024, 3), np.uint8)
    image[700:730, 800:830, 1] = 250
    backends = fake_backends(nudenet=FakeDetector("nudenet", small_thing, tileable=True))
    v = check_image(image, policy_file("[image]\ntile_min_side = 1024"), backends=backends)
    assert v.details["tiles"] == 4 and len(seen) == 5
    assert v.details["regions"] == [{"label": "ANUS_EXPOSED", "score": 0.8, "box": [800, 700, 830, 730],
                                     "category": "sexual"}]  # found in 2 overlapping tiles, merged once
    assert v.action is Action.CENSOR


def test_merge_keeps_the_best_of_duplicates_and_distinct_labels():
    a = Region("X", 0.9, (0, 0, 100, 100), "sexual")
    b = Region("X", 0.5, (5, 5, 100, 100), "sexual")
    c = Region("Y", 0.7, (0, 0, 100, 100), "suggestive")
    fragment = Region("X", 0.6, (0, 50, 40, 100), "sexual")
    assert merge_regions([b, a, c, fragment]) == [a, c]
    assert not is_duplicate((0, 0, 10, 10), (20, 20, 30, 30))


def test_registry_reports_unknown_backends():
    from sdguard.errors import GuardUnavailable

    with pytest.raises(GuardUnavailable, match="unknown image backend 'nope'"):
        get_backend("nope")


def test_a_required_backend_left_out_of_backends_still_runs(policy_file):
    policy = policy_file('[image]\nbackends = ["nudenet"]\nrequired = ["nudenet", "age", "opennsfw"]')
    backends = fake_backends(opennsfw=FakeDetector("opennsfw", fail=True))
    assert check_image(marked_image(), policy, backends=backends).codes == (GUARD_UNAVAILABLE,)


def test_empty_batch():
    assert check_images([], load_policy("public"), backends=fake_backends()) == []


@pytest.mark.parametrize("profile", ["adult", "public", "classroom"])
def test_child_in_swimwear_is_not_minor_sexual(profile):
    # NudeNet's covered-body labels (a swimsuit) feed no category by default, so a child on a beach
    # is not minor ∧ suggestive.
    def swimsuit(image):
        face = fake_backends()["nudenet"].rule(image).faces
        return Detection("nudenet", {"suggestive": 0.9},
                         (Region("FEMALE_BREAST_COVERED", 0.9, NUDE_BOX, "suggestive"),), face)

    backends = fake_backends()
    backends["nudenet"] = FakeDetector("nudenet", swimsuit)
    v = check_image(marked_image(age=7), load_policy(profile), backends=backends)
    assert "minor_sexual" not in v.codes
    assert v.action is Action.ALLOW


def alpha_only(age: int) -> np.ndarray:
    """A picture carried only in the alpha channel over black colour channels (alpha = 255 − grey):
    over white it shows the markers of `marked_image` for nudity, a face and this age."""
    grey = marked_image(age=age)[..., 1]
    grey[0, :3] = (age, 255, 255)
    rgba = np.zeros(grey.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - grey
    return rgba


def test_a_picture_in_the_alpha_channel_is_judged_as_shown():
    # The markers (nudity, face, age 0) show only over a background; the colour channels are black.
    from PIL import Image

    rgba = alpha_only(age=0)
    for image in (rgba, Image.fromarray(rgba, "RGBA"), Image.fromarray(rgba[..., [0, 3]], "LA")):
        v = check_image(image, load_policy("public"), backends=fake_backends())
        assert v.blocked and "minor_sexual" in v.codes and v.details["view"] == "over_white"


def test_a_picture_only_in_the_colour_channels_of_a_transparent_image_is_judged():
    # Fully transparent: over white or black nothing shows; a tool that drops alpha shows the colour.
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 0)
    nude = Detection("nudenet", {"sexual": 0.9}, (Region("FEMALE_BREAST_EXPOSED", 0.9, NUDE_BOX, "sexual"),))
    seen = FakeDetector("nudenet", lambda im: nude if im[0, 0].tolist() == [10, 20, 30] else Detection("nudenet"))
    v = check_image(rgba, load_policy("public"), backends=fake_backends(nudenet=seen))
    assert v.action is Action.CENSOR and v.details["view"] == "colour_channels"
    assert len(seen.calls) == 3


def test_views_of_opaque_and_transparent_images():
    from PIL import Image

    from sdguard.image_guard import ALPHA_VIEWS, views

    opaque = np.dstack([marked_image(), np.full((256, 256), 255, np.uint8)])
    assert len(views(opaque)) == 1 and np.array_equal(views(opaque)[0], marked_image())
    assert "view" not in check_image(opaque, load_policy("public"), backends=fake_backends()).details
    half = np.full((1, 1, 4), (200, 100, 0, 128), np.uint8)
    shown = dict(zip(ALPHA_VIEWS, (v[0, 0].tolist() for v in views(half))))
    assert shown == {"over_white": [227, 177, 127], "over_black": [100, 50, 0], "colour_channels": [200, 100, 0]}
    keyed = Image.new("P", (2, 2))  # a palette image whose colour 0 is transparent
    keyed.info["transparency"] = 0
    assert len(views(keyed)) == 3 and as_rgb(keyed)[0, 0].tolist() == [255, 255, 255]
    bilevel = Image.new("1", (2, 2))  # a 1-bit image whose black is transparent
    bilevel.info["transparency"] = 0
    assert len(views(bilevel)) == 3 and as_rgb(bilevel)[0, 0].tolist() == [255, 255, 255]
