"""Latent formats and preview decoders: factor tables, spaces, linear/TAESD/VAE decoders, file lookup."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from sdguard.errors import GuardUnavailable  # noqa: E402
from sdguard.latent_formats import families, families_with_channels, latent_format  # noqa: E402
from sdguard.latent_preview import (  # noqa: E402
    LinearPreview, TAESDPreview, VAEPreview, find_taesd_decoder, frame_batch, load_taesd_decoder,
    make_decoder, preview_images, taesd_decoder,
)


@pytest.fixture(autouse=True)
def isolated_weights(tmp_path, monkeypatch):
    """No TAESD file from the developer's machine may leak into a test."""
    for name in ("SDGUARD_TAESD_DIR", "SDGUARD_WEIGHTS_DIR", "SDGUARD_MODEL_ROOTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "cache"))


def save_decoder(folder, stem: str, channels: int, suffix: str = ".pth", seed: int = 0):
    torch.manual_seed(seed)
    module = taesd_decoder(channels)
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path, module.eval()


# -- latent formats ---------------------------------------------------------------------------

def test_families_cover_the_four_image_families_and_video():
    assert {"sd15", "sdxl", "sd3", "flux", "wan21", "hunyuan_video"} <= set(families())


@pytest.mark.parametrize("family, channels, taesd", [
    ("sd15", 4, "taesd_decoder"), ("sdxl", 4, "taesdxl_decoder"),
    ("sd3", 16, "taesd3_decoder"), ("flux", 16, "taef1_decoder"), ("wan21", 16, None),
])
def test_format_table_shapes(family, channels, taesd):
    fmt = latent_format(family)
    assert fmt.channels == channels and fmt.taesd_decoder == taesd
    assert len(fmt.rgb_factors) == channels and all(len(row) == 3 for row in fmt.rgb_factors)


def test_published_numbers_are_the_comfyui_ones():
    assert latent_format("sd15").rgb_factors[0] == (0.3512, 0.2297, 0.3227)
    assert latent_format("sdxl").rgb_bias == (0.1084, -0.0175, -0.0011)
    assert (latent_format("sd3").scale, latent_format("sd3").shift) == (1.5305, 0.0609)
    assert (latent_format("flux").scale, latent_format("flux").shift) == (0.3611, 0.1159)
    assert latent_format("flux").rgb_factors[15] == (-0.1262, -0.0982, -0.0778)


def test_aliases_and_unknown_family():
    assert latent_format("SD2").family == "sd15"
    assert latent_format("pony").family == "sdxl"
    with pytest.raises(ValueError, match="unknown model family 'sd9'.*sd15.*flux"):
        latent_format("sd9")


def test_check_shape_suggests_families_by_channel_count():
    with pytest.raises(ValueError, match="has 4 channels; got 16.*sd3, flux"):
        latent_format("sd15").check_shape((1, 16, 64, 64))
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        latent_format("sd15").check_shape((4, 64, 64))
    latent_format("wan21").check_shape((1, 16, 5, 30, 52))
    assert families_with_channels(4) == ("sd15", "sdxl")


@pytest.mark.parametrize("family", ["sd15", "flux", "wan21"])
def test_process_in_and_out_invert_each_other(family):
    fmt = latent_format(family)
    shape = (2, fmt.channels, 3, 8, 8) if fmt.dimensions == 3 else (2, fmt.channels, 8, 8)
    raw = torch.randn(shape)
    assert torch.allclose(fmt.process_out(fmt.process_in(raw)), raw, atol=1e-5)


def test_process_in_is_the_samplers_scaling():
    raw = torch.full((1, 16, 2, 2), 1.0)
    assert torch.allclose(latent_format("flux").process_in(raw), torch.full_like(raw, (1 - 0.1159) * 0.3611))
    assert torch.allclose(latent_format("sd15").process_in(raw[:, :4]), torch.full((1, 4, 2, 2), 0.18215))


# -- linear -----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd15", "sdxl", "sd3", "flux"])
def test_linear_matches_a_per_pixel_reference(family):
    fmt = latent_format(family)
    x0 = torch.randn(2, fmt.channels, 5, 7)
    out = LinearPreview(fmt).decode(x0)
    assert out.shape == (2, 3, 5, 7)
    factors, bias = torch.tensor(fmt.rgb_factors), torch.tensor(fmt.rgb_bias)
    b, y, x = 1, 3, 6
    rgb = x0[b, :, y, x] @ factors + bias               # what ComfyUI's Latent2RGBPreviewer does
    assert torch.allclose(out[b, :, y, x], ((rgb + 1) / 2).clamp(0, 1), atol=1e-6)


def test_linear_zero_latent_is_the_bias():
    out = LinearPreview(latent_format("sdxl")).decode(torch.zeros(1, 4, 2, 2))
    expected = (torch.tensor([0.1084, -0.0175, -0.0011]) + 1) / 2
    assert torch.allclose(out[0, :, 0, 0], expected, atol=1e-6)


def test_preview_images_are_uint8_rgb_downscaled_to_the_longer_side():
    import numpy as np

    previews = preview_images(LinearPreview(latent_format("sd15")), torch.randn(3, 4, 48, 64), size=32)
    assert len(previews) == 3 and all(len(item) == 1 for item in previews)
    image = previews[0][0]
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    # Never upscaled: the linear preview stays at latent resolution.
    small = preview_images(LinearPreview(latent_format("sd15")), torch.randn(1, 4, 48, 64), size=320)
    assert small[0][0].shape == (48, 64, 3)


def test_preview_images_survive_nan():
    x0 = torch.full((1, 4, 8, 8), float("nan"))
    image = preview_images(LinearPreview(latent_format("sd15")), x0)[0][0]
    assert image.shape == (8, 8, 3)


# -- video ------------------------------------------------------------------------------------

def test_frame_batch_keeps_first_and_last_frames_per_item():
    x0 = torch.arange(2 * 10).float().view(2, 1, 10, 1, 1).expand(2, 16, 10, 2, 2).contiguous()
    frames, per_item = frame_batch(x0, max_frames=4)
    assert per_item == 4 and frames.shape == (8, 16, 2, 2)
    picked = frames[:, 0, 0, 0].tolist()
    assert picked[0] == 0 and picked[3] == 9          # item 0: frames 0 .. 9
    assert picked[4] == 10 and picked[7] == 19        # item 1 follows, in order


def test_video_previews_group_frames_per_item():
    x0 = torch.randn(2, 16, 3, 6, 10)
    previews = preview_images(LinearPreview(latent_format("wan21")), x0, max_frames=8)
    assert [len(item) for item in previews] == [3, 3]
    assert previews[1][2].shape == (6, 10, 3)


# -- TAESD ------------------------------------------------------------------------------------

def test_decoder_architecture_has_taesd_parameter_count_and_keys():
    module = taesd_decoder(4)
    assert sum(p.numel() for p in module.parameters()) == 1_222_531  # madebyollin/taesd README
    keys = list(module.state_dict())
    assert keys[:4] == ["1.weight", "1.bias", "3.conv.0.weight", "3.conv.0.bias"]
    assert "7.weight" in keys and "7.bias" not in keys and keys[-1] == "19.bias"


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_taesd_loads_saved_weights_strictly(tmp_path, suffix):
    path, reference = save_decoder(tmp_path / "vae_approx", "taesd_decoder", 4, suffix)
    decoder = TAESDPreview(latent_format("sd15"), search_dirs=[tmp_path / "vae_approx"])
    assert decoder.path == path
    x0 = torch.randn(1, 4, 8, 12)
    out = decoder.decode(x0)
    assert out.shape == (1, 3, 64, 96)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    with torch.inference_mode():
        assert torch.allclose(out, reference(x0).clamp(0, 1), atol=1e-5)


def test_taesd_previews_match_the_plain_layout_decoder(tmp_path):
    """The channels-last decoder gives the previews a plain NCHW decoder would, resized and shrunk."""
    _, reference = save_decoder(tmp_path, "taesd_decoder", 4)

    class Plain:
        name, upscale = "plain", 8

        def decode(self, x0):
            with torch.inference_mode():
                return reference(x0.contiguous()).clamp(0.0, 1.0)

    decoder = TAESDPreview(latent_format("sd15"), search_dirs=[tmp_path])
    x0 = torch.randn(2, 4, 12, 10)
    for kwargs in ({"size": 0}, {"size": 40}, {"size": 40, "shrink_latent": True}):
        ours, plain = preview_images(decoder, x0, **kwargs), preview_images(Plain(), x0, **kwargs)
        for a, b in zip(ours, plain):
            assert a[0].shape == b[0].shape and a[0].flags.c_contiguous
            assert abs(a[0].astype(int) - b[0].astype(int)).max() <= 1


def test_taesd_16_channel_decoder_for_flux(tmp_path):
    save_decoder(tmp_path, "taef1_decoder", 16, ".safetensors")
    out = TAESDPreview(latent_format("flux"), search_dirs=[tmp_path]).decode(torch.randn(2, 16, 4, 4))
    assert out.shape == (2, 3, 32, 32)


def test_taesd_file_for_other_channels_is_refused_with_the_path(tmp_path):
    path, _ = save_decoder(tmp_path, "taesd_decoder", 16)
    with pytest.raises(GuardUnavailable, match="taesd_decoder.pth is not a TAESD decoder for 4-channel"):
        load_taesd_decoder(path, 4)


def test_taesd_extra_keys_are_refused(tmp_path):
    state = taesd_decoder(4).state_dict()
    state["20.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "taesd_decoder.pth")
    with pytest.raises(GuardUnavailable, match="not a TAESD decoder"):
        load_taesd_decoder(tmp_path / "taesd_decoder.pth", 4)


def test_taesd_garbage_file_is_refused(tmp_path):
    (tmp_path / "taesd_decoder.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(GuardUnavailable, match="cannot read TAESD decoder"):
        load_taesd_decoder(tmp_path / "taesd_decoder.safetensors", 4)


def test_taesd_odd_files_are_unavailable_with_a_message(tmp_path):
    values = list(taesd_decoder(4).state_dict().values())
    torch.save(dict(enumerate(values)), tmp_path / "int_keys.pth")
    save_file({"decoder.layers.x.weight": torch.zeros(1)}, str(tmp_path / "no_index.safetensors"))
    (tmp_path / "empty.pth").write_bytes(b"")
    for name, message in (("int_keys.pth", "key 0 is not a name"), ("no_index.safetensors", "has no layer number"),
                          ("empty.pth", r"empty.pth: \w+")):       # an EOFError, which has no text
        with pytest.raises(GuardUnavailable, match=message):
            load_taesd_decoder(tmp_path / name, 4)
    (tmp_path / "host").mkdir()
    (tmp_path / "int_keys.pth").rename(tmp_path / "host" / "taesd_decoder.pth")
    with pytest.raises(GuardUnavailable, match="key 0"):  # as LoopMonitor builds it: a TAESD file is there
        make_decoder(latent_format("sd15"), "auto", search_dirs=[tmp_path / "host"])


def test_diffusers_autoencoder_tiny_layout_loads(tmp_path):
    torch.manual_seed(1)
    native = taesd_decoder(4)
    # diffusers: DecoderTiny.layers has no clamp layer, so every index is one lower.
    state = {f"decoder.layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v.contiguous()
             for k, v in native.state_dict().items()}
    state["encoder.layers.0.weight"] = torch.zeros(64, 3, 3, 3)
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    loaded = load_taesd_decoder(tmp_path / "diffusion_pytorch_model.safetensors", 4)
    assert torch.equal(loaded.state_dict()["19.weight"], native.state_dict()["19.weight"])


def test_taesd_missing_names_file_and_folder(tmp_path):
    with pytest.raises(GuardUnavailable) as e:
        TAESDPreview(latent_format("sdxl"), search_dirs=[tmp_path / "models" / "vae_approx"])
    text = str(e.value)
    assert "taesdxl_decoder.pth" in text and str(tmp_path / "models" / "vae_approx") in text
    assert "VAE-taesd" in text and "linear" in text


def test_taesd_found_by_prefix_like_comfyui(tmp_path):
    path, _ = save_decoder(tmp_path, "taesd_decoder.fp16", 4, ".safetensors")
    assert find_taesd_decoder("taesd_decoder", [tmp_path]) == path


def test_taesd_found_through_env_and_host_roots(tmp_path, monkeypatch):
    path, _ = save_decoder(tmp_path / "extra", "taesd3_decoder", 16)
    monkeypatch.setenv("SDGUARD_TAESD_DIR", str(tmp_path / "extra"))
    assert find_taesd_decoder("taesd3_decoder") == path
    monkeypatch.delenv("SDGUARD_TAESD_DIR")
    webui = tmp_path / "webui"
    path, _ = save_decoder(webui / "models" / "VAE-taesd", "taesd_decoder", 4)
    assert find_taesd_decoder("taesd_decoder", model_roots=[webui]) == path


def test_family_without_taesd_says_so():
    with pytest.raises(GuardUnavailable, match="no TAESD decoder exists for wan21"):
        TAESDPreview(latent_format("wan21"))


def test_make_decoder_choices(tmp_path, monkeypatch):
    fmt = latent_format("sd15")
    assert make_decoder(fmt, "auto").name == "linear"          # no file: falls back, like ComfyUI
    assert make_decoder(fmt, "linear").name == "linear"
    with pytest.raises(GuardUnavailable):
        make_decoder(fmt, "taesd")                              # required: no silent fallback
    with pytest.raises(ValueError, match="not one of auto, taesd, linear"):
        make_decoder(fmt, "vae")
    save_decoder(tmp_path, "taesd_decoder", 4)
    assert make_decoder(fmt, "auto", search_dirs=[tmp_path]).name == "taesd"
    assert make_decoder(latent_format("wan21"), "auto").name == "linear"  # the family has no TAESD


def test_make_decoder_auto_ignores_what_is_not_a_file(tmp_path):
    (tmp_path / "taesd_decoder.fp16.safetensors").mkdir()                      # a folder
    (tmp_path / "taesd_decoder.old.pth").symlink_to(tmp_path / "gone.pth")     # a dangling link
    assert make_decoder(latent_format("sd15"), "auto", search_dirs=[tmp_path]).name == "linear"


def test_make_decoder_auto_refuses_a_taesd_file_that_does_not_load(tmp_path):
    (tmp_path / "taesd_decoder.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(GuardUnavailable, match="taesd_decoder.safetensors"):
        make_decoder(latent_format("sd15"), "auto", search_dirs=[tmp_path])


def test_shrink_latent_feeds_upscaling_decoders_a_smaller_latent():
    seen = []

    class Spy:
        name, upscale = "spy", 8

        def decode(self, x0):
            seen.append(tuple(x0.shape))
            return torch.zeros(x0.shape[0], 3, x0.shape[2] * 8, x0.shape[3] * 8)

    previews = preview_images(Spy(), torch.randn(1, 4, 128, 96), size=320, shrink_latent=True)
    assert seen == [(1, 4, 40, 30)] and previews[0][0].shape == (320, 240, 3)
    preview_images(Spy(), torch.randn(1, 4, 128, 96), size=320)
    assert seen[-1] == (1, 4, 128, 96)


# -- host VAE ---------------------------------------------------------------------------------

def test_vae_preview_takes_comfyui_image_layout():
    fmt = latent_format("sd15")
    calls = []

    def vae_decode(x0):                     # ComfyUI: vae.decode(process_latent_out(x0)) -> [N,H,W,3]
        calls.append(x0)
        raw = fmt.process_out(x0)
        return torch.sigmoid(raw[:, :3]).repeat_interleave(8, 2).repeat_interleave(8, 3).movedim(1, -1)

    out = VAEPreview(vae_decode).decode(torch.randn(2, 4, 4, 4))
    assert out.shape == (2, 3, 32, 32) and len(calls) == 1


def test_vae_preview_rejects_wrong_layout():
    with pytest.raises(ValueError, match=r"expected \[N, 3, H, W\]"):
        VAEPreview(lambda x: torch.zeros(1, 8, 8, 3), channels_last=False).decode(torch.zeros(1, 4, 1, 1))


# -- real weights (skipped unless a TAESD file is installed) ------------------------------------

@pytest.mark.weights
def test_real_taesd_decoder_loads_strictly(monkeypatch):
    monkeypatch.undo()                       # use the real environment
    from sdguard import weights

    found = weights.find("taesd_decoder")
    if found is None:
        pytest.skip("taesd_decoder.pth not installed (sdguard weights fetch taesd_decoder)")
    out = TAESDPreview(latent_format("sd15"), found.path).decode(torch.zeros(1, 4, 8, 8))
    assert out.shape == (1, 3, 64, 64)
