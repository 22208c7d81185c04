"""Inspector and the provenance CLI (`watermark embed|detect`, `label`, `inspect`)."""

from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from sdguard.cli import main
from sdguard.inspect import SDXL_BITS, inspect_bytes
from sdguard.provenance import ProvenanceOptions, apply


def image(h: int = 512, w: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 // w + 30, yy * 200 // h + 30, np.full((h, w), 120)], -1).astype(float)
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def png_bytes(a: np.ndarray, **text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


@pytest.fixture
def plain_png(tmp_path):
    path = tmp_path / "plain.png"
    path.write_bytes(png_bytes(image(), parameters="a cat\nSteps: 20"))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_reports_every_layer(tmp_path):
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    from sdguard.c2pa_sign import load_or_create_identity

    load_or_create_identity(tmp_path)
    data = apply(png_bytes(image(), prompt="{}", workflow="{}"),
                 ProvenanceOptions(producer="acme", content_id="c1", c2pa=True, c2pa_identity=tmp_path))
    report = inspect_bytes(data, legacy=False)
    assert report["implicit_label"]["integrity"] == "ok"
    assert report["watermark"]["detected"] and report["watermark"]["matches_label"]
    assert report["host_metadata"] == {"prompt": 2, "workflow": 2}
    assert report["evidence"] == ["implicit_label", "c2pa", "watermark", "host_metadata"]
    assert report["c2pa"]["actions"][0]["action"] == "c2pa.created"


def test_a_tampered_c2pa_manifest_is_not_evidence(tmp_path, capsys):
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    from sdguard.c2pa_sign import load_or_create_identity
    from sdguard.provenance import decode, reencode

    load_or_create_identity(tmp_path / "id")
    signed = apply(png_bytes(image(256, 256)), ProvenanceOptions(watermark=False, implicit=False, c2pa=True,
                                                                 c2pa_identity=tmp_path / "id"))
    rgb, alpha = decode(signed)
    rgb = rgb.copy()
    rgb[:128] = 0  # new pixels, every chunk (the manifest included) kept
    path = tmp_path / "tampered.png"
    path.write_bytes(reencode(signed, "png", rgb, alpha))
    report = inspect_bytes(path.read_bytes(), legacy=False)
    assert report["c2pa"]["validation_state"] == "Invalid"
    assert report["evidence"] == ["c2pa (invalid)"]
    assert run(capsys, "inspect", str(path), "--no-legacy", "--require", "c2pa")[0] == 3
    assert run(capsys, "inspect", str(path), "--no-legacy", "--require", "any")[0] == 3


def test_a_label_the_pixels_no_longer_match_is_no_signal_for_require_any(tmp_path, capsys):
    from sdguard.provenance import decode, reencode

    labelled = apply(png_bytes(image(64, 64)), ProvenanceOptions(watermark=False, content_id="c1"))
    rgb, alpha = decode(labelled)
    rgb = rgb.copy()
    rgb[:32] = 0  # new pixels, the label chunk kept
    path = tmp_path / "edited.png"
    path.write_bytes(reencode(labelled, "png", rgb, alpha))
    assert inspect_bytes(path.read_bytes(), legacy=False)["evidence"] == ["implicit_label (mismatch)"]
    assert run(capsys, "inspect", str(path), "--no-legacy", "--require", "any")[0] == 3
    path.write_bytes(labelled)
    assert run(capsys, "inspect", str(path), "--no-legacy", "--require", "any")[0] == 0


def test_inspect_without_c2pa_says_it_is_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_c2pa(name, *args, **kwargs):
        if name == "c2pa":
            raise ImportError("No module named 'c2pa'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_c2pa)
    report = inspect_bytes(png_bytes(image()), legacy=False)
    assert "sdguard[c2pa]" in report["c2pa"]["unavailable"]


def test_inspect_plain_image_has_no_evidence():
    report = inspect_bytes(png_bytes(image()), legacy=False)
    # Without the optional c2pa extra the inspector says so instead of claiming "no manifest".
    assert report["evidence"] == [] and (report["c2pa"] is None or "unavailable" in report["c2pa"])
    assert report["implicit_label"]["record"] is None and not report["watermark"]["detected"]


def test_inspect_reads_legacy_sdxl_mark_as_weak_evidence():
    imwatermark = pytest.importorskip("imwatermark")
    encoder = imwatermark.WatermarkEncoder()
    encoder.set_watermark("bits", [int(b) for b in format(SDXL_BITS, "048b")])
    rgb = image(512, 512, seed=4)
    marked = np.ascontiguousarray(encoder.encode(rgb[:, :, ::-1].copy(), "dwtDct")[:, :, ::-1])
    legacy = inspect_bytes(png_bytes(marked))["legacy_watermarks"]
    assert legacy["strength"] == "weak" and legacy["sdxl"]["found"]
    assert not inspect_bytes(png_bytes(rgb))["legacy_watermarks"]["sdxl"]["found"]


def test_inspect_skips_the_legacy_check_on_images_too_large_for_it(monkeypatch):
    import sdguard.inspect as inspect_module

    monkeypatch.setattr(inspect_module, "LEGACY_MAX_PIXELS", 400 * 400)  # a 9400² PNG took 3 GB and 15 s
    legacy = inspect_bytes(png_bytes(image(512, 512)))["legacy_watermarks"]
    assert not legacy["checked"] and "larger than 160,000 pixels" in legacy["reason"]


def test_cli_watermark_embed_then_detect(tmp_path, plain_png, capsys):
    out = tmp_path / "marked.png"
    code, stdout, _ = run(capsys, "watermark", "embed", str(plain_png), str(out), "--payload", "0123456789ab")
    assert code == 0 and "0123456789ab" in stdout
    assert Image.open(out).text["parameters"] == "a cat\nSteps: 20"
    code, stdout, _ = run(capsys, "watermark", "detect", str(out), "--json")
    assert code == 0
    assert json.loads(stdout) == {"path": str(out), "detected": True, "payload": "0123456789ab",
                                  "confidence": json.loads(stdout)["confidence"]}
    assert json.loads(stdout)["confidence"] > 0.9
    code, stdout, _ = run(capsys, "watermark", "detect", str(out), str(plain_png), "--json")
    assert code == 3
    assert [json.loads(line)["detected"] for line in stdout.splitlines()] == [True, False]


def test_cli_label_and_inspect(tmp_path, plain_png, capsys):
    out = tmp_path / "labelled.png"
    code, stdout, _ = run(capsys, "label", str(plain_png), str(out), "--visible", "--producer", "acme",
                          "--content-id", "id-9", "--json")
    assert code == 0 and json.loads(stdout)["layers"] == ["visible", "implicit_label"]
    code, stdout, _ = run(capsys, "inspect", str(out), "--no-legacy", "--json", "--require", "label")
    report = json.loads(stdout)
    assert code == 0 and report["implicit_label"]["record"]["ProduceID"] == "id-9"
    code, _, _ = run(capsys, "inspect", str(out), "--no-legacy", "--require", "watermark")
    assert code == 3
    code, stdout, _ = run(capsys, "inspect", str(plain_png), "--no-legacy")
    assert code == 0 and "implicit label: none" in stdout and "evidence: host_metadata" in stdout


def test_cli_relabelling_keeps_the_content_id_that_ties_the_watermark_to_the_label(tmp_path, plain_png, capsys):
    out = tmp_path / "labelled.png"
    code, stdout, _ = run(capsys, "label", str(plain_png), str(out), "--watermark", "--json")
    first = json.loads(stdout)["content_id"]
    assert code == 0 and first
    code, stdout, _ = run(capsys, "label", str(out), str(out), "--producer", "My Studio", "--json")
    assert code == 0 and json.loads(stdout)["content_id"] == first
    report = inspect_bytes(out.read_bytes(), legacy=False)
    assert report["implicit_label"]["record"]["ProduceID"] == first and report["watermark"]["matches_label"]
    code, stdout, _ = run(capsys, "label", str(plain_png), str(tmp_path / "new.png"), "--content-id", "", "--json")
    assert code == 0 and json.loads(stdout)["content_id"] not in ("", first)  # unlabelled: a new random ID


def test_cli_inspect_reads_the_watermark_of_a_bmp_and_says_its_label_was_not_checked(tmp_path, capsys):
    from sdguard.watermark import embed

    path = tmp_path / "marked.bmp"
    Image.fromarray(embed(image(), bytes.fromhex("0123456789ab"))).save(path, "BMP")
    code, stdout, _ = run(capsys, "inspect", str(path), "--no-legacy", "--json", "--require", "watermark")
    report = json.loads(stdout)
    assert code == 0 and report["format"] == "bmp" and report["watermark"]["payload"] == "0123456789ab"
    assert "not BMP" in report["implicit_label"]["not_checked"] and "not_checked" in report["c2pa"]
    assert report["evidence"] == ["watermark"]
    code, stdout, _ = run(capsys, "inspect", str(path), "--no-legacy", "--require", "label")
    assert code == 3 and "implicit label: not checked" in stdout and "C2PA: not checked" in stdout
    code, stdout, _ = run(capsys, "inspect", str(path))
    assert code == 0 and "legacy SD watermarks (weak evidence): SDXL" in stdout
    small = tmp_path / "small.bmp"
    Image.fromarray(image(64, 64)).save(small, "BMP")
    code, stdout, _ = run(capsys, "inspect", str(small))
    assert code == 0 and "legacy SD watermarks: not checked (image smaller than 256 px)" in stdout


def test_cli_inspect_names_a_file_no_image_reader_knows(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    code, stdout, stderr = run(capsys, "inspect", str(path))
    assert code == 2 and stdout == "" and "notes.txt: not an image format Pillow can read" in stderr


@pytest.mark.parametrize("argv", [["watermark", "embed", "{bad}", "{out}"], ["label", "{bad}", "{out}"],
                                  ["watermark", "detect", "{bad}"], ["inspect", "{bad}", "--no-legacy"]])
def test_cli_malformed_input_exits_2_and_writes_nothing(tmp_path, plain_png, capsys, argv):
    bad = tmp_path / "bad.png"
    bad.write_bytes(plain_png.read_bytes()[:300])
    out = tmp_path / "out.png"
    code, stdout, stderr = run(capsys, *[a.format(bad=bad, out=out) for a in argv])
    assert code == 2 and stdout == "" and "bad.png" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "plain.png"]


@pytest.mark.parametrize("command", [["watermark", "detect"], ["inspect", "--no-legacy"]])
def test_cli_batch_reports_every_readable_file_and_exits_2_for_the_unreadable(tmp_path, plain_png, capsys,
                                                                            command):
    bad = tmp_path / "bad.png"
    bad.write_bytes(plain_png.read_bytes()[:300])
    code, stdout, stderr = run(capsys, *command, str(bad), str(plain_png), str(tmp_path / "gone.png"), "--json")
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert code == 2 and [r["path"] for r in rows] == [str(bad), str(plain_png), str(tmp_path / "gone.png")]
    assert "error" in rows[0] and "error" not in rows[1] and rows[2]["error"] == "No such file or directory"
    assert f"{bad}:" in stderr and "gone.png: No such file or directory" in stderr


@pytest.mark.parametrize("command", [["label"], ["watermark", "embed"]])
@pytest.mark.parametrize("name", ["out.jpg", "out.bmp", "out"])
def test_cli_output_named_for_another_format_exits_2_and_writes_nothing(tmp_path, plain_png, capsys, command, name):
    code, stdout, stderr = run(capsys, *command, str(plain_png), str(tmp_path / name))
    assert (code, stdout) == (2, "") and f"{name}: the output keeps the input's format (png); name it .png" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png"]
    assert run(capsys, *command, str(plain_png), str(tmp_path / "out.PNG"))[0] == 0  # case does not matter


@pytest.mark.parametrize("command", [["label", "--visible"], ["watermark", "embed"]])
def test_cli_pixel_layers_on_an_animation_exit_2_and_write_nothing(tmp_path, capsys, command):
    frames = [Image.fromarray(np.full((256, 256, 3), c, np.uint8)) for c in (40, 120, 200)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], duration=100)
    code, stdout, stderr = run(capsys, command[0], *command[1:], str(tmp_path / "anim.webp"),
                               str(tmp_path / "out.webp"))
    assert (code, stdout) == (2, "") and "an animated image" in stderr
    assert not (tmp_path / "out.webp").exists()


@pytest.mark.parametrize("identity", ["missing", "empty", "file"])
def test_cli_label_with_an_unusable_c2pa_identity_exits_2_and_writes_nothing(tmp_path, plain_png, capsys,
                                                                               identity):
    named = tmp_path / identity
    if identity == "empty":
        named.mkdir()
    elif identity == "file":
        named.write_text("not a folder")
    out = tmp_path / "out.png"
    code, stdout, stderr = run(capsys, "label", str(plain_png), str(out), "--c2pa", "--c2pa-identity", str(named))
    assert code == 2 and stdout == "" and f"{named}: no C2PA identity" in stderr
    assert not out.exists()
    assert not named.exists() or named.is_file() or not any(named.iterdir())


def test_cli_rejects_bad_payload(tmp_path, plain_png, capsys):
    code, _, stderr = run(capsys, "watermark", "embed", str(plain_png), str(tmp_path / "o.png"), "--payload", "zz")
    assert code == 2 and "hex" in stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_cli_labelling_in_place_keeps_the_file_private(tmp_path, plain_png, capsys):
    plain_png.chmod(0o600)
    assert run(capsys, "label", str(plain_png), str(plain_png))[0] == 0
    assert plain_png.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "fresh.png"
    assert run(capsys, "label", str(plain_png), str(fresh))[0] == 0
    mask = os.umask(0)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~mask  # a new file: the usual permissions


def test_cli_label_names_the_identity_whose_key_is_bad_and_the_output_that_is_a_folder(tmp_path, plain_png, capsys):
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    from sdguard.c2pa_sign import CERT_FILE, KEY_FILE, load_or_create_identity

    load_or_create_identity(tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / CERT_FILE).write_bytes((tmp_path / "good" / CERT_FILE).read_bytes())
    (bad / KEY_FILE).write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    code, stdout, stderr = run(capsys, "label", str(plain_png), str(tmp_path / "o.png"), "--c2pa",
                               "--c2pa-identity", str(bad))
    assert (code, stdout) == (2, "") and f"{bad}: the C2PA key cannot be used" in stderr
    assert f"{plain_png}:" not in stderr and not (tmp_path / "o.png").exists()
    folder = tmp_path / "out.png"
    folder.mkdir()
    code, stdout, stderr = run(capsys, "label", str(plain_png), str(folder))
    assert (code, stdout) == (2, "") and f"{folder}: cannot write" in stderr and ".tmp" not in stderr
    assert list(folder.iterdir()) == []
