"""`sdguard check-image`: output per image, exit statuses, censored copies only where allowed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sdguard.cli import main
from sdguard.image_guard import as_pixels

from _image_fakes import NUDE_BOX, FakeDetector, fake_backends, marked_image


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    backends = fake_backends()
    monkeypatch.setattr("sdguard.image_backends.get_backend", lambda name: backends[name])
    return backends


@pytest.fixture
def album(tmp_path):
    """clean.png, nude.png (adult: censor under public), sub/minor.png (minor ∧ nudity: block)."""
    root = tmp_path / "album"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(marked_image(age=35)).save(root / "clean.png")
    Image.fromarray(marked_image(age=35, nude=True)).save(root / "nude.png")
    Image.fromarray(marked_image(age=9, nude=True)).save(root / "sub" / "minor.png")
    (root / "notes.txt").write_text("not an image, skipped when walking")
    return root


def run(capsys, *argv):
    status = main(["check-image", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_folder_walk_json_and_exit_3(capsys, album, tmp_path):
    out_dir = tmp_path / "censored"
    status, out, _ = run(capsys, album, "--json", "--censor-to", out_dir)
    assert status == 3
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["path"].split("album/")[1], r["action"]) for r in rows] == [
        ("clean.png", "allow"), ("nude.png", "censor"), ("sub/minor.png", "block")]
    nude = rows[1]
    assert nude["regions"] == [{"label": "FEMALE_BREAST_EXPOSED", "score": 0.9, "box": list(NUDE_BOX),
                                "category": "sexual"}]
    assert nude["faces"][0]["age"] == 35.0 and nude["reasons"] and nude["categories"]["sexual"] == 0.9
    assert "minor_sexual" in rows[2]["codes"]
    # Only the censored image was written; the blocked and the clean one were not.
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert written == ["album/nude.png"] and nude["censored_copy"].endswith("album/nude.png")
    copy = np.asarray(Image.open(out_dir / "album" / "nude.png"))
    x0, y0, x1, y1 = NUDE_BOX
    original = marked_image(age=35, nude=True)
    assert not np.array_equal(copy[y0:y1, x0:x1], original[y0:y1, x0:x1])
    assert np.array_equal(Image.open(album / "nude.png"), original)  # original untouched


def test_clean_file_exit_0_and_text_output(capsys, album):
    status, out, _ = run(capsys, album / "clean.png")
    assert status == 0 and out.startswith("ALLOW")


def test_adult_profile_still_blocks_minor(capsys, album):
    status, out, _ = run(capsys, album / "sub" / "minor.png", album / "nude.png", "--profile", "adult")
    assert status == 3
    assert out.splitlines()[0].startswith("BLOCK") and "minor_sexual" in out
    assert "ALLOW" in out.splitlines()[-1]


def test_unreadable_file_is_reported_others_still_checked_exit_2(capsys, album):
    (album / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    status, out, err = run(capsys, album, "--json")
    assert status == 2
    rows = [json.loads(line) for line in out.splitlines()]
    [error] = [r for r in rows if "error" in r]
    assert error["path"] == str(album / "broken.png") and error["error"].startswith("not a readable image")
    assert len(rows) == 4 and "broken.png" in err


def test_missing_path_is_a_usage_error_with_nothing_on_stdout(capsys, album):
    status, out, err = run(capsys, album / "clean.png", album / "nope.png")
    assert status == 2 and out == "" and "nope.png: no such file or folder" in err


def test_censor_to_never_overwrites(capsys, album, tmp_path):
    out_dir = tmp_path / "c"
    run(capsys, album / "nude.png", "--censor-to", out_dir)
    run(capsys, album / "nude.png", "--censor-to", out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["nude-1.png", "nude.png"]


def test_failed_backend_blocks_and_writes_nothing(capsys, album, tmp_path, fakes):
    fakes["opennsfw"] = FakeDetector("opennsfw", fail=True)
    out_dir = tmp_path / "c"
    status, out, _ = run(capsys, album / "nude.png", "--json", "--censor-to", out_dir)
    row = json.loads(out)
    assert status == 3 and row["action"] == "block" and row["codes"] == ["guard_unavailable"]
    assert not out_dir.exists() or not any(out_dir.rglob("*.png"))


def test_multi_frame_file_reports_its_worst_frame(capsys, tmp_path):
    frames = [Image.fromarray(marked_image(age=35)), Image.fromarray(marked_image(age=9, nude=True)),
              Image.fromarray(marked_image(age=35, nude=True))]
    path = tmp_path / "frames.tif"  # lossless, so the fakes' marker pixels survive
    frames[0].save(path, save_all=True, append_images=frames[1:])
    status, out, _ = run(capsys, path, "--json")
    row = json.loads(out)
    assert (row["frames"], row["frame"], row["action"], status) == (3, 1, "block", 3)


def test_audit_records_each_image_by_hash(capsys, album, tmp_path):
    from sdguard import AuditLog
    from sdguard.audit import hash_input

    log = tmp_path / "audit.jsonl"
    status, _, _ = run(capsys, album / "clean.png", album / "sub" / "minor.png", "--audit", log)
    records = list(AuditLog(log).records())
    assert status == 3 and len(records) == 2
    assert records[1]["input_sha256"] == hash_input((album / "sub" / "minor.png").read_bytes())
    assert records[1]["verdict"]["action"] == "block" and records[1]["extra"]["path"].endswith("minor.png")


def test_a_16_bit_png_is_judged_as_it_looks(capsys, tmp_path, fakes):
    seen = []
    nudenet = fakes["nudenet"]
    fakes["nudenet"] = FakeDetector("nudenet", lambda image: seen.append(image.mean()) or nudenet.rule(image))
    ramp = np.linspace(0, 65535, 128 * 128).reshape(128, 128).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    status, _, _ = run(capsys, tmp_path / "grey16.png")
    assert status == 0 and len(seen) == 1 and abs(seen[0] - 127.5) < 1  # not clipped to white


def test_a_picture_in_the_alpha_channel_is_judged_and_censored_as_shown(capsys, tmp_path):
    # Black colour channels, the picture (nudity, a face aged 0) in alpha: blocked, as it shows.
    grey = marked_image(age=0)[..., 1]
    grey[0, :3] = (0, 255, 255)
    hidden = np.zeros(grey.shape + (4,), np.uint8)
    hidden[..., 3] = 255 - grey
    Image.fromarray(hidden, "RGBA").save(tmp_path / "hidden.png")
    # An adult's nudity, partly transparent: censored; the copy is the over-white composite.
    seen = np.dstack([marked_image(age=35, nude=True), np.full((256, 256), 200, np.uint8)])
    seen[0, :3, 3] = 255
    Image.fromarray(seen, "RGBA").save(tmp_path / "seen.png")
    status, out, _ = run(capsys, tmp_path / "hidden.png", tmp_path / "seen.png", "--json",
                         "--censor-to", tmp_path / "c")
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 3 and [(r["action"], r["view"]) for r in rows] == [("block", "over_white"),
                                                                         ("censor", "over_white")]
    assert "minor_sexual" in rows[0]["codes"]
    copy = Image.open(tmp_path / "c" / "seen.png")
    over_white = np.asarray(Image.alpha_composite(Image.new("RGBA", (256, 256), "white"),
                                                  Image.fromarray(seen, "RGBA")).convert("RGB"))
    x0, y0, x1, y1 = NUDE_BOX
    outside = np.ones((256, 256), bool)
    outside[y0 - 12:y1 + 12, x0 - 12:x1 + 12] = False
    assert copy.mode == "RGB" and np.abs(np.asarray(copy, int) - over_white)[outside].max() <= 1


def test_frames_are_checked_as_they_are_decoded(capsys, tmp_path, fakes, monkeypatch):
    # Holding every decoded frame at once let a 321 KB GIF take 4.8 GB: at most one is held now.
    import sdguard.cli.image as cli_image

    decoded, decoded_when_judged = [], []
    monkeypatch.setattr(cli_image, "as_pixels", lambda frame: decoded.append(1) or as_pixels(frame))
    nudenet = fakes["nudenet"]
    fakes["nudenet"] = FakeDetector("nudenet", lambda im: decoded_when_judged.append(len(decoded))
                                    or nudenet.rule(im))
    frames = [Image.fromarray(marked_image(age=35, nude=n)) for n in (False, True, False, False)]
    frames[0].save(tmp_path / "frames.tif", save_all=True, append_images=frames[1:])
    status, out, _ = run(capsys, tmp_path / "frames.tif", "--json", "--censor-to", tmp_path / "c")
    row = json.loads(out)
    assert decoded_when_judged == [1, 2, 3, 4]
    assert (status, row["action"], row["frame"], row["frames"]) == (0, "censor", 1, 4)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # no copy of an animation


def test_an_unusable_censor_to_is_a_usage_error_before_anything_is_checked(capsys, album, tmp_path):
    (tmp_path / "file").write_text("")
    status, out, err = run(capsys, album, "--censor-to", tmp_path / "file" / "c", "--json")
    assert status == 2 and out == "" and "--censor-to" in err


def test_a_copy_that_cannot_be_written_is_reported_and_the_rest_still_checked(capsys, tmp_path):
    root = tmp_path / "album"
    (root / "a").mkdir(parents=True)
    for name in ("a/nude.png", "b.png", "c.png"):
        Image.fromarray(marked_image(age=35, nude=True)).save(root / name)
    out_dir = tmp_path / "c"
    (out_dir / "album").mkdir(parents=True)
    (out_dir / "album" / "a").write_text("a file where the copy's folder belongs")
    status, out, err = run(capsys, root, "--json", "--censor-to", out_dir)
    rows = [json.loads(line) for line in out.splitlines()]
    # Files of a folder before its subfolders: b.png, c.png, a/nude.png (then its write error).
    assert status == 2 and [r.get("action") for r in rows] == ["censor", "censor", "censor", None]
    assert rows[3] == {"path": str(out_dir / "album" / "a" / "nude.png"), "error": rows[3]["error"]}
    assert "censored_copy" not in rows[2] and "nude.png" in err
    assert sorted(p.name for p in (out_dir / "album").iterdir()) == ["a", "b.png", "c.png"]


@pytest.mark.parametrize("suffix, written", [(".psd", "nude.png"), (".xpm", "nude.png"), (".tif", "nude.tif"),
                                             (".jpg", "nude.jpg")])
def test_a_copy_is_written_in_a_format_pillow_can_write(capsys, tmp_path, suffix, written):
    # Pillow reads PSD and XPM but cannot write them: a KeyError traceback before; a PNG now.
    path = tmp_path / f"nude{suffix}"
    Image.fromarray(marked_image(age=35, nude=True)).save(tmp_path / "nude.png")
    (tmp_path / "nude.png").rename(path)  # the fakes only read the pixels, whatever the name says
    status, out, _ = run(capsys, path, "--censor-to", tmp_path / "c")
    assert status == 0 and out.startswith("CENSOR")
    assert [p.name for p in (tmp_path / "c").iterdir()] == [written]
    expected = {".png": "PNG", ".tif": "TIFF", ".jpg": "JPEG"}[Path(written).suffix]
    assert Image.open(tmp_path / "c" / written).format == expected


def test_walking_dot_dot_mirrors_inside_censor_to(capsys, tmp_path, monkeypatch):
    # `check-image .. --censor-to out` wrote out/../nude.png, outside the output folder.
    from sdguard.cli._common import find_files

    work = tmp_path / "album" / "work"
    work.mkdir(parents=True)
    Image.fromarray(marked_image(age=35, nude=True)).save(tmp_path / "album" / "nude.png")
    monkeypatch.chdir(work)
    status, out, _ = run(capsys, "..", "--censor-to", "out")
    assert status == 0 and out.startswith("CENSOR") and (work / "out" / "album" / "nude.png").is_file()
    assert not (work / "nude.png").exists()
    assert [rel.as_posix() for _, rel in find_files(["../work/.."], (".png",))] == [
        "album/nude.png", "album/work/out/album/nude.png"]
    assert [rel.as_posix() for _, rel in find_files(["."], (".png",))] == ["work/out/album/nude.png"]


def test_a_folder_walk_finds_every_common_image_suffix(capsys, tmp_path):
    # .apng, .jfif, .jpe, .avif, .heic were skipped silently (exit 0, never checked).
    nude = Image.fromarray(marked_image(age=35, nude=True))
    for name in ("a.apng", "b.jfif", "c.JPE"):
        nude.save(tmp_path / name, format="PNG")  # the fakes read pixels; the name is what is walked
    (tmp_path / "d.heic").write_bytes(b"not decodable here")
    status, out, err = run(capsys, tmp_path, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 2 and [Path(r["path"]).name for r in rows] == ["a.apng", "b.jfif", "c.JPE", "d.heic"]
    assert [r.get("action") for r in rows] == ["censor", "censor", "censor", None] and "d.heic" in err


def test_a_censored_copy_gets_the_mode_the_umask_gives(capsys, album, tmp_path):
    # mkstemp made copies private (0600) while originals are 0644.
    import os
    import stat

    old = os.umask(0o022)
    try:
        run(capsys, album / "nude.png", "--censor-to", tmp_path / "c")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c" / "nude.png").stat().st_mode) == 0o644
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["nude.png"]  # no temporary left behind
