"""Image guard benchmark: latency per backend, what tiling buys, false positives on safe images.

    pip install scikit-image scikit-learn   # sample photos bundled in those wheels (bench only)
    SDGUARD_ONNX_THREADS=1 python benchmarks/bench_image_guard.py

1. Latency on one CPU thread (set SDGUARD_ONNX_THREADS=1 before the backends load; the script
   sets it when unset), after load, median of N runs, per backend and for the whole ensemble.
2. Tiling: no NSFW images exist offline, so recall is measured on *faces* (NudeNet's FACE_*
   labels go through the same detector, resize and tiling as body parts). The astronaut photo
   (skimage, public domain, NASA) is scaled so its face is S px tall and pasted at random places
   into 1024² and 2048² canvases; a face counts as found when a face box overlaps the truth with
   IoU ≥ 0.3.
3. False positives: every bundled sample photo in scikit-image and scikit-learn (people, a cat,
   coffee, a rocket, landscapes, textures...) at native size and resized to 1024², plus the 200
   LFW thumbnails (100 faces, 100 non-faces, 25 px greyscale, upscaled to 256 px), under the
   public and classroom profiles. Anything not "allow" under public counts as a false positive.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("SDGUARD_ONNX_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from sdguard import load_policy  # noqa: E402
from sdguard.image_backends import get_backend  # noqa: E402
from sdguard.image_guard import check_image  # noqa: E402
from sdguard.image_tiles import tile_grid  # noqa: E402
from sdguard.image_types import Face  # noqa: E402

RUNS = 7
FACE_SIZES = (16, 24, 32, 48, 64, 96)
PLACEMENTS = 12
IOU_FOUND = 0.3
SEED = 1234


def median_ms(fn, runs=RUNS):
    """(wall, CPU) milliseconds, medians. With one ONNX thread, CPU time is the cost on one core;
    wall time also counts waiting for a core on a busy machine."""
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def canvas(size, rng):
    """A smooth random background (no skin-like texture guarantees; plain enough not to fire)."""
    small = rng.integers(40, 220, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def latency(photo):
    policy = load_policy("public")
    settings = policy.section("image")
    print(f"\n## Latency, one ONNX thread (SDGUARD_ONNX_THREADS={os.environ['SDGUARD_ONNX_THREADS']}), "
          f"median of {RUNS}, load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("CPU ms (wall ms in brackets)")
    print("| image | nudenet whole | nudenet tiles | opennsfw | age (1 face) | ensemble, tiling on | ensemble, tiling off |")
    print("|---|---|---|---|---|---|---|")
    nudenet, opennsfw, age = (get_backend(n) for n in ("nudenet", "opennsfw", "age"))
    no_tiles = _policy_file("[image]\ntile_min_side = 0\n")
    for size in (512, 1024, 2048):
        image = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
        tiles = tile_grid(size, size, settings)
        crops = [image[y0:y1, x0:x1] for x0, y0, x1, y1 in tiles]
        face = Face((size // 3, size // 6, size // 2, size // 3), 0.9)
        row = [
            median_ms(lambda: nudenet.detect([image])),
            median_ms(lambda: nudenet.detect(crops)) if crops else (0.0, 0.0),
            median_ms(lambda: opennsfw.detect([image])),
            median_ms(lambda: age.detect([image], faces=[(face,)])),
            median_ms(lambda: check_image(image, policy), runs=3),
            median_ms(lambda: check_image(image, no_tiles), runs=3),
        ]
        print(f"| {size}² ({len(tiles)} tiles) | " + " | ".join(f"{cpu:.0f} ({wall:.0f})" for wall, cpu in row) + " |")


def _policy_file(body):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write('extends = "public"\n' + body)
    return load_policy(f.name)


def iou(a, b):
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def tiling_recall(photo):
    from sdguard.image_tiles import detect_tiled

    nudenet = get_backend("nudenet")
    [truth] = nudenet.detect([photo])[0].faces
    settings = load_policy("public").section("image")
    rng = np.random.default_rng(SEED)
    print(f"\n## Tiling: faces found (IoU ≥ {IOU_FOUND}) out of {PLACEMENTS} placements per size")
    print("| canvas | face height | whole image only | whole + tiles |")
    print("|---|---|---|---|")
    for size in (1024, 2048):
        tiles = tile_grid(size, size, settings)
        for face_px in FACE_SIZES:
            scale = face_px / (truth.box[3] - truth.box[1])
            pasted = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            found = [0, 0]
            for _ in range(PLACEMENTS):
                image = canvas(size, rng)
                h, w = pasted.shape[:2]
                x, y = (int(v) for v in rng.integers(0, size - max(h, w), 2))
                image[y:y + h, x:x + w] = pasted
                want = tuple(int(round(v * scale)) + off for v, off in zip(truth.box, (x, y, x, y)))
                for i, detection in enumerate((nudenet.detect([image])[0], detect_tiled(nudenet, image, tiles))):
                    found[i] += any(iou(f.box, want) >= IOU_FOUND for f in detection.faces)
            print(f"| {size}² | {face_px} px | {found[0]}/{PLACEMENTS} | {found[1]}/{PLACEMENTS} |")


def ages_by_face_size(photo):
    nudenet, age = get_backend("nudenet"), get_backend("age")
    [truth] = nudenet.detect([photo])[0].faces
    print("\n## Age estimate of the same adult face (astronaut, about 40) by face size")
    print("| face height | estimated age | P(under 18) |")
    print("|---|---|---|")
    for face_px in (16, 24, 32, 48, 64, 97, 200):
        scale = face_px / (truth.box[3] - truth.box[1])
        small = cv2.resize(photo, None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        box = tuple(int(round(v * scale)) for v in truth.box)
        [face] = age.detect([small], faces=[(Face(box, 1.0),)])[0].faces
        p_minor = 1 - face.age_confidence if face.age >= 18 else face.age_confidence
        print(f"| {face_px} px | {face.age:.0f} | {p_minor:.3f} |")


def safe_images():
    import skimage.data as data
    from sklearn.datasets import load_sample_images

    names = ("astronaut", "camera", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
             "retina", "coins", "moon", "page", "text", "clock", "horse", "brick", "grass", "gravel",
             "colorwheel", "logo", "cell", "microaneurysms")
    images = {}
    for name in names:
        try:
            image = np.asarray(getattr(data, name)())
        except Exception:  # a sample that needs a download is skipped, offline
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.dtype != np.uint8:
            image = (255 * (image - image.min()) / max(1e-9, float(np.ptp(image)))).astype(np.uint8)
        images[name] = image
    left, right, _ = data.stereo_motorcycle()
    images["motorcycle"] = left
    for name, image in zip(("china", "flower"), load_sample_images().images):
        images[name] = image
    return images


def false_positives():
    from sdguard.image_guard import as_rgb

    images = {k: as_rgb(v) for k, v in safe_images().items()}
    variants = dict(images)
    variants.update({f"{k}@1024": cv2.resize(v, (1024, 1024), interpolation=cv2.INTER_CUBIC) for k, v in images.items()})
    print(f"\n## Safe sample photos ({len(images)} images × native + 1024² = {len(variants)})")
    for profile in ("public", "classroom"):
        policy = load_policy(profile)
        flagged = {}
        for name, image in variants.items():
            verdict = check_image(image, policy)
            if verdict.action.value != "allow":
                flagged[name] = f"{verdict.action.value}: {'; '.join(verdict.to_dict()['reasons'])}"
        print(f"- {profile}: {len(flagged)}/{len(variants)} not allowed" + "".join(f"\n    - {k}: {v}" for k, v in flagged.items()))

    import skimage.data as data

    faces = data.lfw_subset()
    policy = load_policy("public")
    flagged = 0
    minors = 0
    for small in faces:
        image = cv2.resize((small * 255).astype(np.uint8), (256, 256), interpolation=cv2.INTER_CUBIC)
        verdict = check_image(image, policy)
        flagged += verdict.action.value != "allow"
        minors += verdict.categories.get("minor", 0.0) >= policy.threshold("minor", "age")
    print(f"- LFW thumbnails (200, 25 px upscaled to 256²), public: {flagged}/200 not allowed; "
          f"{minors}/200 with a face judged under 18")


def main():
    import skimage.data as data

    photo = data.astronaut()
    latency(photo)
    tiling_recall(photo)
    ages_by_face_size(photo)
    false_positives()


if __name__ == "__main__":
    main()
