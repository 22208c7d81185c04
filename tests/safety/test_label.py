"""Implicit label (GB 45438 XMP TC260:AIGC), container I/O, visible label, and the provenance pipeline."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from sdguard import label as lab
from sdguard import label_containers as lc
from sdguard import label_visible as vis
from sdguard import provenance as prov
from sdguard import watermark as wm

HOST_TEXT = {"prompt": json.dumps({"3": {"class_type": "KSampler"}}), "workflow": json.dumps({"nodes": []}),
             "parameters": "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 1"}
RECORD = lab.AigcRecord(ContentProducer="001191110108MA01KP2T5U00000", ProduceID="run-42")


def pixels(h: int = 300, w: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w) + 60], -1)
    return np.clip(base + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def host_png(a: np.ndarray | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in HOST_TEXT.items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(pixels() if a is None else a).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def encoded(fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels()).save(buf, fmt, **kw)
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def text_chunks(data: bytes) -> list[bytes]:
    return [c.data for c in lc.png_chunks(data) if c.kind == b"tEXt"]


def test_png_label_round_trip_keeps_host_metadata_byte_for_byte():
    original = host_png()
    out = lab.write_label(original, RECORD)
    assert text_chunks(out) == text_chunks(original)
    assert np.array_equal(decoded(out), decoded(original))
    report = lab.read_label(out)
    assert report.count == 1 and report.location == "xmp" and report.integrity == "ok"
    assert report.record["ContentProducer"] == RECORD.ContentProducer and report.record["Label"] == "1"
    assert report.record["ReservedCode1"].startswith("sha256:")
    xmp = Image.open(io.BytesIO(out)).text["XML:com.adobe.xmp"]
    assert lab.TC260_NS in xmp and lab.TRAINED_ALGORITHMIC_MEDIA in xmp


def test_relabelling_replaces_instead_of_duplicating():
    first = lab.write_label(host_png(), RECORD)
    info = PngImagePlugin.PngInfo()
    info.add_text("AIGC", json.dumps({"AIGC": {"Label": "1", "ContentProducer": "doubao"}}))
    im = Image.open(io.BytesIO(first))
    buf = io.BytesIO()
    for k, v in im.text.items():
        info.add_itxt(k, v) if k.startswith("XML") else info.add_text(k, v)
    im.save(buf, "PNG", pnginfo=info)
    assert lab.read_label(buf.getvalue()).count == 2  # xmp + the wrapped tEXt form, both found
    again = lab.write_label(buf.getvalue(), lab.AigcRecord(ContentProducer="second", ProduceID="x"))
    report = lab.read_label(again)
    assert report.count == 1 and report.record["ContentProducer"] == "second"
    assert Image.open(io.BytesIO(again)).text["XML:com.adobe.xmp"].count("TC260:AIGC=") == 1


@pytest.mark.parametrize("fmt,kw", [("JPEG", {"quality": 90}), ("WEBP", {"quality": 80}),
                                    ("WEBP", {"lossless": True})])
def test_jpeg_and_webp_labels_round_trip(fmt, kw):
    exif = Image.Exif()
    exif[0x010E] = "host description"
    original = encoded(fmt, exif=exif.tobytes(), **kw)
    out = lab.write_label(lab.write_label(original, RECORD), RECORD)
    report = lab.read_label(out)
    assert report.count == 1 and report.integrity == "ok"
    assert np.array_equal(decoded(out), decoded(original))
    assert Image.open(io.BytesIO(out)).getexif()[0x010E] == "host description"


def test_simple_webp_becomes_extended_with_xmp_flag():
    original = encoded("WEBP", quality=80)
    assert lc.webp_chunks(original)[0].kind == b"VP8 "
    chunks = lc.webp_chunks(lab.write_label(original, RECORD))
    assert chunks[0].kind == b"VP8X" and chunks[0].data[0] & 0x04
    assert struct.unpack("<I", chunks[0].data[4:7] + b"\x00")[0] + 1 == 400


def png_with_xmp(packet: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet)
    buf = io.BytesIO()
    Image.fromarray(pixels()).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def test_foreign_xmp_properties_are_kept():
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="Krita"/>'
              '</rdf:RDF></x:xmpmeta>')
    xmp = Image.open(io.BytesIO(lab.write_label(png_with_xmp(packet), RECORD))).text["XML:com.adobe.xmp"]
    assert 'xmp:CreatorTool="Krita"' in xmp and "TC260:AIGC" in xmp


def test_a_label_under_another_prefix_for_the_tc260_namespace_is_replaced_and_the_rest_kept():
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              f'<rdf:Description rdf:about="" xmlns:tc="{lab.TC260_NS}" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
              'xmp:CreatorTool="OtherTool" tc:AIGC="{&quot;Label&quot;:&quot;1&quot;,&quot;ProduceID&quot;:&quot;old&quot;}"/>'
              '</rdf:RDF></x:xmpmeta>')
    out = lab.write_label(png_with_xmp(packet), RECORD)
    report = lab.read_label(out)
    assert report.count == 1 and report.record["ProduceID"] == RECORD.ProduceID and report.integrity == "ok"
    assert 'xmp:CreatorTool="OtherTool"' in Image.open(io.BytesIO(out)).text["XML:com.adobe.xmp"]


def test_a_jpeg_whose_own_xmp_leaves_no_room_is_refused_by_size_not_as_malformed():
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:description="'
              + "x" * 65_000 + '"/></rdf:RDF></x:xmpmeta>')
    segments, tail = lc.jpeg_segments(encoded("JPEG"))
    big = lc.jpeg_bytes(lc.jpeg_set_xmp(segments, packet), tail)
    assert lab.read_label(big).integrity == "absent"  # a well-formed file
    with pytest.raises(ValueError, match="more than the 65,533 of one JPEG APP1 segment") as caught:
        lab.write_label(big, RECORD)
    assert not isinstance(caught.value, lc.MalformedImage)


def test_an_unreadable_xmp_packet_is_replaced_with_a_warning(caplog):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta><rdf:RDF>unclosed")
    buf = io.BytesIO()
    Image.fromarray(pixels()).save(buf, "PNG", pnginfo=info)
    out = lab.write_label(buf.getvalue(), RECORD)
    assert lab.read_label(out).integrity == "ok"
    assert "does not parse or holds no rdf:RDF" in caplog.text


def test_changed_pixels_fail_the_integrity_check():
    labelled = lab.write_label(host_png(), RECORD)
    tampered = prov.reencode(labelled, "png", 255 - decoded(labelled), None)
    assert "XML:com.adobe.xmp" in Image.open(io.BytesIO(tampered)).text
    assert lab.read_label(tampered).integrity == "mismatch"


def test_relabelling_keeps_the_id_of_a_label_on_its_own_pixels_only():
    labelled = lab.write_label(host_png(), RECORD)
    copied = prov.reencode(labelled, "png", 255 - decoded(labelled), None)  # same label, other pixels
    assert lab.read_label(copied).integrity == "mismatch"
    assert prov.with_content_id(labelled, prov.ProvenanceOptions()).content_id == RECORD.ProduceID
    assert prov.with_content_id(copied, prov.ProvenanceOptions()).content_id not in ("", RECORD.ProduceID)


def test_unlabelled_file_and_wrapped_json():
    assert lab.read_label(host_png()).integrity == "absent"
    wrapped = json.dumps({"AIGC": {"Label": "2", "ProduceID": "p"}})
    assert lab.AigcRecord.from_json(wrapped) == lab.AigcRecord(Label="2", ProduceID="p")


DEEP_JSON = "[" * 100_000  # json parses nesting by recursion: this exhausts the stack


@pytest.mark.parametrize("where", ["png-text", "xmp"])
def test_a_label_nested_too_deeply_is_ignored_with_a_warning_not_a_crash(caplog, where):
    if where == "xmp":
        data = png_with_xmp('<x:xmpmeta xmlns:x="adobe:ns:meta/">'
                            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                            f'<rdf:Description rdf:about="" xmlns:TC260="{lab.TC260_NS}" TC260:AIGC="{DEEP_JSON}"/>'
                            '</rdf:RDF></x:xmpmeta>')
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text("AIGC", DEEP_JSON)
        buf = io.BytesIO()
        Image.fromarray(pixels()).save(buf, "PNG", pnginfo=info)
        data = buf.getvalue()
    with pytest.raises(ValueError, match="nested too deeply"):
        lab.AigcRecord.from_json(DEEP_JSON)
    assert lab.find_labels(data) == [] and lab.read_label(data).integrity == "absent"
    assert "nested too deeply" in caplog.text
    # `sdguard label` reaches it through with_content_id: a fresh ID, and the file gets labelled.
    assert prov.with_content_id(data, prov.ProvenanceOptions()).content_id
    assert lab.read_label(prov.apply(data, prov.ProvenanceOptions(watermark=False))).integrity == "ok"


@pytest.mark.parametrize("mangle", [
    lambda d: d[:-20],                                  # truncated PNG
    lambda d: d[:40] + bytes([d[40] ^ 0xFF]) + d[41:],  # bad CRC
    lambda d: b"GIF89a" + d[6:],                        # not a supported format
])
def test_malformed_files_raise(mangle):
    with pytest.raises(lc.MalformedImage):
        lab.write_label(mangle(host_png()), RECORD)


def test_truncated_jpeg_raises():
    with pytest.raises(lc.MalformedImage):
        lc.jpeg_segments(encoded("JPEG")[:200])


# --- visible label --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(512, 512), (768, 1344), (1024, 600)])
@pytest.mark.parametrize("text", vis.TEXTS)
def test_visible_label_text_height_at_least_5_percent(shape, text):
    out = vis.draw_label(np.full((*shape, 3), 255, np.uint8), text, "top-left")
    box = out.max(axis=2) < 150                      # the dark box (white background elsewhere)
    rows, cols = np.where(box.any(axis=1))[0], np.where(box.any(axis=0))[0]
    inside = out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    glyph_rows = np.where((inside.min(axis=2) > 200).any(axis=1))[0]  # white text inside the box
    assert glyph_rows[-1] - glyph_rows[0] + 1 >= vis.MIN_HEIGHT_FRACTION * min(shape)


@pytest.mark.parametrize("background", [0, 255])
def test_visible_label_contrasts_on_dark_and_light(background):
    out = vis.draw_label(np.full((400, 400, 3), background, np.uint8), "AI生成", "bottom-right")
    corner = out[300:, 200:].astype(int)
    assert corner.max() - corner.min() > 150  # white text against a dark box or dark background
    assert np.array_equal(out[:200, :200], np.full((200, 200, 3), background))


def test_bundled_font_renders_distinct_cjk_glyphs():
    from PIL import ImageDraw

    def glyph(ch: str) -> np.ndarray:
        im = Image.new("L", (64, 64))
        ImageDraw.Draw(im).text((4, 4), ch, font=vis._font(48), fill=255)
        return np.asarray(im) > 127

    sheng, cheng, missing = glyph("生"), glyph("成"), glyph("字")  # 字 is not in the subset
    assert sheng.sum() > 100 and cheng.sum() > 100
    assert not np.array_equal(sheng, cheng)
    assert not np.array_equal(sheng, missing) and not np.array_equal(cheng, missing)
    assert (vis.FONT_PATH.parent / "OFL.txt").is_file()


def test_visible_label_rejects_unknown_text_and_corner():
    with pytest.raises(ValueError):
        vis.draw_label(pixels(), "AI 作品")
    with pytest.raises(ValueError):
        vis.draw_label(pixels(), corner="middle")


# --- pipeline -----------------------------------------------------------------------------------

def test_pipeline_layers_all_verify_and_host_metadata_survives(tmp_path, monkeypatch):
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    monkeypatch.setenv("SDGUARD_HOME", str(tmp_path))  # no identity named: the local one, made here
    original = host_png(pixels(512, 512, seed=3))
    options = prov.ProvenanceOptions(visible=True, producer="acme", content_id="run-7", c2pa=True)
    out = prov.apply(original, options)
    assert text_chunks(out) == text_chunks(original)
    assert lab.read_label(out).integrity == "ok"
    assert wm.detect(decoded(out)).payload == prov.payload_for("run-7").hex()
    from sdguard import c2pa_sign

    summary = c2pa_sign.summarize(out, "png")
    assert summary["actions"][0] == {"action": "c2pa.created",
                                     "digitalSourceType": c2pa_sign.TRAINED_ALGORITHMIC_MEDIA}
    assert summary["validation_errors"] == ["signingCredential.untrusted"]  # self-signed, nothing else wrong
    assert (tmp_path / "c2pa" / "c2pa-key.pem").stat().st_mode & 0o077 == 0


def test_a_c2pa_identity_given_as_text_is_a_path_and_empty_text_is_none(tmp_path):
    assert prov.ProvenanceOptions(c2pa_identity=str(tmp_path)).c2pa_identity == tmp_path
    assert prov.ProvenanceOptions(c2pa_identity="").c2pa_identity is None  # an empty settings box


def test_a_named_c2pa_identity_must_be_there_and_is_never_replaced(tmp_path):
    from sdguard import c2pa_sign

    options = prov.ProvenanceOptions(content_id="x", c2pa=True, c2pa_identity=tmp_path / "mine")
    with pytest.raises(FileNotFoundError, match="c2pa-cert-chain.pem and c2pa-key.pem missing"):
        prov.apply(host_png(), options)
    assert not (tmp_path / "mine").exists()
    half = tmp_path / "half"
    half.mkdir()
    (half / c2pa_sign.CERT_FILE).write_bytes(b"my chain")
    for load in (c2pa_sign.load_identity, c2pa_sign.load_or_create_identity):
        with pytest.raises(FileNotFoundError, match="c2pa-key.pem missing"):
            load(half)
    assert [p.name for p in half.iterdir()] == [c2pa_sign.CERT_FILE]
    assert (half / c2pa_sign.CERT_FILE).read_bytes() == b"my chain"


def test_signing_then_editing_breaks_c2pa(tmp_path):
    pytest.importorskip("c2pa")
    pytest.importorskip("cryptography")
    from sdguard import c2pa_sign

    chain, key = c2pa_sign.load_or_create_identity(tmp_path)
    signed = c2pa_sign.sign(lab.write_label(host_png(), RECORD), "png", chain, key)
    edited = lab.write_label(signed, lab.AigcRecord(ProduceID="later"))
    assert "signingCredential.untrusted" in c2pa_sign.summarize(signed, "png")["validation_errors"]
    assert any("mismatch" in code for code in c2pa_sign.summarize(edited, "png")["validation_errors"])


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_pipeline_refuses_pixel_layers_on_animations_and_labels_them_whole(fmt):
    frames = [Image.fromarray(np.full((256, 256, 3), c, np.uint8)) for c in (40, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ValueError, match="animated image"):  # re-encoding would keep one frame
        prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="a"))
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="a", watermark=False))
    assert Image.open(io.BytesIO(out)).n_frames == 2 and lab.read_label(out).record["ProduceID"] == "a"


def test_a_multi_picture_jpeg_is_not_taken_for_an_animation():
    first, second = (Image.fromarray(pixels(seed=s)) for s in (1, 2))
    buf = io.BytesIO()
    first.save(buf, "MPO", save_all=True, append_images=[second])  # e.g. a phone's HDR gain map
    assert Image.open(io.BytesIO(buf.getvalue())).n_frames == 2
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="m", visible=True))
    assert lab.read_label(out).integrity == "ok"
    # Re-encoded as its first picture alone: an index still naming a second one made a broken file.
    assert not any(p.startswith(b"MPF\0") for _, p in lc.jpeg_segments(out)[0])
    reread = Image.open(io.BytesIO(out))
    assert reread.format == "JPEG" and getattr(reread, "n_frames", 1) == 1
    labelled = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="m", watermark=False))
    assert Image.open(io.BytesIO(labelled)).n_frames == 2  # the label alone keeps every picture


def test_pipeline_keeps_alpha_and_jpeg_exif():
    rgba = np.dstack([pixels(), np.full((300, 400), 200, np.uint8)])
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="a"))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out)))[:, :, 3], rgba[:, :, 3])
    exif = Image.Exif()
    exif[0x010E] = "kept"
    jpeg = encoded("JPEG", exif=exif.tobytes())
    out = prov.apply(jpeg, prov.ProvenanceOptions(content_id="b"))
    assert Image.open(io.BytesIO(out)).getexif()[0x010E] == "kept"
    assert lab.read_label(out).integrity == "ok"


def test_visible_label_shows_on_a_transparent_background():
    rgba = np.zeros((512, 512, 4), np.uint8)
    rgba[128:384, 128:384] = (200, 60, 60, 255)  # a subject cut out, transparent elsewhere
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="t", visible=True, watermark=False))
    shown = Image.new("RGBA", (512, 512), (255, 255, 255, 255))
    shown.alpha_composite(Image.open(io.BytesIO(out)).convert("RGBA"))  # as a viewer shows it
    corner = np.asarray(shown.convert("RGB"))[-60:, -140:].astype(int)
    assert corner.min() < 120 and corner.max() > 240  # the dark box and white text show
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(out)))[:100, :100, 3], np.zeros((100, 100)))


@pytest.mark.parametrize("save", [{"keep_rgb": True}, {"cmyk": True}], ids=["rgb-stored-as-is", "cmyk"])
def test_watermarking_a_jpeg_not_stored_as_ycbcr_keeps_its_colours(save):
    from PIL import ImageCms

    im = Image.fromarray(pixels(256, 256))
    buf = io.BytesIO()
    if save.get("cmyk"):  # Pillow writes an Adobe APP14 segment (transform 0) for CMYK
        im.convert("CMYK").save(buf, "JPEG", quality=92,
                                icc_profile=b"\0" * 16 + b"CMYK" + b"\0" * 108)  # a CMYK profile's header
    else:
        im.save(buf, "JPEG", quality=92, keep_rgb=True)
    before = decoded(buf.getvalue()).astype(int)
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="c", implicit=False))
    assert np.abs(decoded(out).astype(int) - before).mean() < 8  # was ~74 levels off
    segments = lc.jpeg_segments(out)[0]
    assert not any(p.startswith(b"Adobe") or p.startswith(b"ICC_PROFILE") for _, p in segments)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb_jpeg = encoded("JPEG", icc_profile=srgb)
    out = prov.apply(rgb_jpeg, prov.ProvenanceOptions(content_id="c", implicit=False))
    assert Image.open(io.BytesIO(out)).info["icc_profile"] == srgb  # an RGB profile still describes it


def gray16_png() -> tuple[bytes, np.ndarray]:
    values = (np.mgrid[0:256, 0:256][1] * 256).astype(np.uint16)  # a 0..65280 gradient
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I;16")
    return buf.getvalue(), values


def test_a_16_bit_greyscale_png_keeps_its_tones_through_the_pixel_layers():
    data, values = gray16_png()
    out = prov.apply(data, prov.ProvenanceOptions(content_id="g", visible=True))
    grey = decoded(out)[:, :, 0].astype(int)
    # Away from the label (bottom-right), within a few levels of the 8-bit scaled gradient (was ~255 everywhere).
    assert np.abs(grey[:128] - values[:128] // 257).mean() < 4
    assert lab.read_label(out).integrity == "ok"


def test_the_pixel_digest_sees_edits_to_16_bit_samples():
    data, values = gray16_png()
    labelled = lab.write_label(data, RECORD)
    assert lab.read_label(labelled).integrity == "ok"
    buf = io.BytesIO()
    edited = values.copy()
    edited[:, 1:] = 65535 - values[:, 1:]  # reversed; every sample is still >= 255, where RGB clips
    Image.fromarray(edited).save(buf, "PNG")
    chunks = lc.png_chunks(labelled)
    fresh = [c for c in lc.png_chunks(buf.getvalue()) if c.kind == b"IDAT"]
    tampered = lc.png_bytes([c for c in chunks if c.kind not in (b"IDAT", b"IEND")] + fresh + [chunks[-1]])
    assert lab.read_label(tampered).integrity == "mismatch"


def test_the_pixel_digest_of_8_bit_images_is_unchanged():
    # Labels already written must keep verifying: for 8-bit images the digest is still over the RGB pixels.
    import base64
    import hashlib

    for mode in ("RGB", "RGBA", "P", "L"):
        buf = io.BytesIO()
        Image.fromarray(pixels(64, 48)).convert(mode).save(buf, "PNG")
        rgb = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        digest = hashlib.sha256(b"48x64:" + rgb.tobytes()).digest()
        assert lab.pixel_digest(buf.getvalue()) == "sha256:" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_visible_label_is_upright_in_its_corner_as_the_image_is_shown(orientation):
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (255, 255, 255)).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    out = prov.apply(buf.getvalue(), prov.ProvenanceOptions(content_id="o", visible=True, watermark=False))
    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(out))).convert("L")).astype(int)
    expected = np.asarray(Image.fromarray(vis.draw_label(np.full((*shown.shape, 3), 255, np.uint8))).convert("L"))
    assert np.abs(shown - expected.astype(int)).mean() < 3  # as if drawn on the upright image (JPEG noise aside)


def test_a_second_standard_xmp_packet_in_a_jpeg_is_not_dropped_silently(caplog):
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:rights="{}"/>'
              '</rdf:RDF></x:xmpmeta>')
    segments, tail = lc.jpeg_segments(encoded("JPEG"))
    two = [(0xE1, lc.XMP_JPEG_HEADER + packet.format(who).encode()) for who in ("Alice", "Bob")]
    out = lab.write_label(lc.jpeg_bytes(segments[:1] + two + segments[1:], tail), RECORD)
    xmp = lc.jpeg_xmp(lc.jpeg_segments(out)[0])
    assert 'dc:rights="Alice"' in xmp and lab.read_label(out).count == 1
    assert "2 standard XMP packets" in caplog.text


@pytest.mark.parametrize("subsampling", [0, 2])
def test_pixel_layers_keep_a_jpegs_chroma_subsampling(subsampling):
    from PIL import JpegImagePlugin

    out = prov.apply(encoded("JPEG", quality=92, subsampling=subsampling),
                     prov.ProvenanceOptions(content_id="s", implicit=False))
    assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(out))) == subsampling
