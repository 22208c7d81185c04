"""Preview decoders: turn the sampler's predicted clean latent (x0) into small RGB images.

Every decoder takes x0 in the host's **internal** latent space, exactly as the sampler callback
hands it over (ComfyUI callback ``x0``, A1111 ``shared.state.current_latent``, Forge ``params.x``
after CFG): SD1.5 ``raw * 0.18215``, SDXL ``raw * 0.13025``, SD3/Flux ``(raw - shift) * scale``.

- `LinearPreview`: the published per-family latent→RGB matrix, a weighted sum of channels per pixel, at
  latent resolution (64×64 for a 512² image). Weight-free; what ComfyUI's ``Latent2RGBPreviewer``
  does, on the internal space, with no ``process_latent_out``.
- `TAESDPreview`: madebyollin's Tiny AutoEncoder decoder (≈1.2 M parameters) at full resolution.
  ComfyUI's ``TAESDPreviewerImpl`` and A1111's "TAESD" live preview feed it the internal latent
  unchanged (the TAE family was distilled on scaled latents; ComfyUI only multiplies by
  ``vae_scale`` when TAESD stands in for the full VAE, whose input is raw). So: no
  ``process_latent_out`` here either.
- `VAEPreview`: the host's full VAE through a callable the adapter passes in. A VAE decodes *raw*
  latents, so that callable must convert first (ComfyUI: ``vae.decode(model.model.process_latent_out(x0))``;
  or `LatentFormat.process_out`).

Video latents ``[B, C, T, H, W]`` (Wan, HunyuanVideo, LTXV, Mochi) are previewed frame by frame:
each latent frame (standing for ~4 video frames) goes through the 2-D decoder as its own image,
with the family's linear factors; their dedicated tiny decoders (TAEHV, TAEW) are temporal models
and are not implemented here. LTXV (128 channels) and Mochi need their factors added to the table.

All decoders return float RGB ``[N, 3, H, W]`` in [0, 1]; `preview_images` turns that into the
RGB ``uint8`` ``(H, W, 3)`` numpy arrays the image guard reads.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from .errors import GuardUnavailable
from .latent_formats import IMAGE_DIMENSIONS, LatentFormat

logger = logging.getLogger("sdguard.preview")

# Extra folders to search, separated by os.pathsep.
TAESD_DIR_ENV = "SDGUARD_TAESD_DIR"
# Safetensors first: it cannot run code. .pth files are read with torch.load(weights_only=True).
TAESD_SUFFIXES = (".safetensors", ".pth", ".pt")
DECODER_CHOICES = ("auto", "taesd", "linear")
# Frames decoded at once: bounds TAESD's full-resolution activations (≈64 MiB per frame at 1024²).
MAX_DECODE_BATCH = 4
TAESD_WIDTH = 64
_TAESD_CLAMP = 3.0


class PreviewDecoder(Protocol):
    """Anything that turns internal-space latents ``[N, C, h, w]`` into RGB ``[N, 3, H, W]`` in [0, 1]."""

    name: str
    upscale: int  # output pixels per latent pixel (1 for linear, 8 for TAESD and the SD VAEs)

    def decode(self, x0: torch.Tensor) -> torch.Tensor: ...


class LinearPreview:
    """Latent→RGB by the family's published factors (internal space in, latent resolution out).

    Args:
        fmt (`LatentFormat`): the model family.

    Example:
        >>> LinearPreview(latent_format("sd15")).decode(torch.zeros(1, 4, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    name = "linear"
    upscale = 1

    def __init__(self, fmt: LatentFormat):
        self.format = fmt
        # Per channel, its RGB factors shaped to broadcast over [N, 3, h, w].
        self._weight = torch.tensor(fmt.rgb_factors, dtype=torch.float32)[:, None, :, None, None]
        self._bias = torch.tensor(fmt.rgb_bias, dtype=torch.float32)[None, :, None, None]

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        if self._weight.device != x0.device:
            self._weight, self._bias = self._weight.to(x0.device), self._bias.to(x0.device)
        x0 = x0.float()
        # One multiply-add per channel instead of a matrix product: on a CPU, a GEMM this small
        # wakes torch's thread pool, whose spinning threads then slow the classifier that runs
        # next (~5 ms of ~30 on 2 cores); elementwise ops on a 64² latent stay on this thread.
        rgb = torch.empty((x0.shape[0], 3, *x0.shape[2:]), dtype=torch.float32, device=x0.device).copy_(self._bias)
        for channel, weight in enumerate(self._weight):
            rgb.addcmul_(x0[:, channel:channel + 1], weight)
        return rgb.add_(1.0).div_(2.0).clamp_(0.0, 1.0)


class Clamp(nn.Module):
    """Soft clamp of the latent to about ±3 (TAESD's first layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / _TAESD_CLAMP) * _TAESD_CLAMP


class Block(nn.Module):
    """TAESD's residual block; names match madebyollin/taesd and ComfyUI so checkpoints load strictly."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv = nn.Sequential(_conv(n_in, n_out), nn.ReLU(), _conv(n_out, n_out), nn.ReLU(),
                                  _conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def taesd_decoder(latent_channels: int = 4) -> nn.Sequential:
    """The TAESD decoder (``taesd``, ``taesdxl``: 4 channels; ``taesd3``, ``taef1``: 16), randomly
    initialised. Its ``state_dict`` keys are those of ``taesd*_decoder.pth`` (``"1.weight"``, ...)."""
    w = TAESD_WIDTH

    def stage() -> list[nn.Module]:
        return [Block(w, w), Block(w, w), Block(w, w), nn.Upsample(scale_factor=2), _conv(w, w, bias=False)]

    return nn.Sequential(Clamp(), _conv(latent_channels, w), nn.ReLU(),
                         *stage(), *stage(), *stage(), Block(w, w), _conv(w, 3))


def find_taesd_decoder(stem: str, search_dirs: Iterable[str | Path] = (), *,
                       model_roots: Sequence[str | Path] = ()) -> Path:
    """Find the decoder file ``<stem>.safetensors`` / ``.pth`` on disk (never downloads).

    Looks in `search_dirs` (the adapter passes the host's folders; like ComfyUI, a longer name
    starting with the stem also counts, e.g. ``taesd_decoder.fp16.safetensors``), then
    ``$SDGUARD_TAESD_DIR``, then wherever the weights manager looks for the manifest entry of
    that name (``$SDGUARD_WEIGHTS_DIR``, ``<root>/models/vae_approx`` and ``<root>/models/VAE-taesd``
    under `model_roots` and ``$SDGUARD_MODEL_ROOTS``, sdguard's cache, ``weights/``).

    Raises:
        `GuardUnavailable`: not found; the message names the file, the folders searched and the fix.
    """
    dirs = taesd_search_dirs(search_dirs)
    for folder in dirs:
        for suffix in TAESD_SUFFIXES:
            exact = folder / f"{stem}{suffix}"
            if exact.is_file():
                return exact
        if folder.is_dir():
            loose = sorted(p for p in folder.iterdir()
                           if p.name.startswith(stem) and p.suffix in TAESD_SUFFIXES and p.is_file())
            if loose:
                return loose[0]
    from . import weights
    try:
        found = weights.find(stem, model_roots=model_roots)
        managed = weights.missing_message(weights.load_manifest()[stem], model_roots)
    except (weights.WeightsError, KeyError):
        found, managed = None, "run `sdguard weights list` to see which decoders sdguard knows"
    if found is not None:
        return found.path
    searched = f" in {', '.join(str(d) for d in dirs)}" if dirs else ""
    raise GuardUnavailable(
        f"TAESD decoder '{stem}.pth' (or .safetensors) not found{searched}; {managed}. "
        f"Or use the linear preview decoder")


def taesd_search_dirs(search_dirs: Iterable[str | Path] = ()) -> list[Path]:
    """The folders `find_taesd_decoder` searches before asking the weights manager, in order."""
    dirs = [Path(d) for d in search_dirs]
    dirs += [Path(d) for d in os.environ.get(TAESD_DIR_ENV, "").split(os.pathsep) if d]
    return list(dict.fromkeys(dirs))


def load_taesd_decoder(path: str | Path, latent_channels: int) -> nn.Sequential:
    """Build the decoder and load `path` into it with strict key matching.

    Accepts madebyollin/ComfyUI/A1111 files (``taesd*_decoder.pth`` or the same keys as
    safetensors) and diffusers ``AutoencoderTiny`` safetensors (``decoder.layers.N.*``).

    Raises:
        `GuardUnavailable`: unreadable file, or keys/shapes that do not fit a `latent_channels` decoder.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any load failure means the decoder is unavailable
        # Some errors have no text (an empty .pth raises a bare EOFError): name the error then.
        raise GuardUnavailable(f"cannot read TAESD decoder {path}: {str(e) or type(e).__name__}") from e
    if not isinstance(state, dict):
        raise GuardUnavailable(f"{path} holds a {type(state).__name__}, not a TAESD decoder state dict")
    odd = [key for key in state if not isinstance(key, str)]
    if odd:  # a pickled dict may have any keys; the key mapping below reads strings
        raise GuardUnavailable(f"{path} is not a TAESD decoder state dict (key {odd[0]!r} is not a name)")
    module = taesd_decoder(latent_channels)
    try:
        module.load_state_dict(_native_keys(state), strict=True)
    except (RuntimeError, ValueError) as e:  # ValueError: a diffusers key without a layer number
        first = str(e).splitlines()[:3]
        raise GuardUnavailable(f"{path} is not a TAESD decoder for {latent_channels}-channel latents "
                               f"({' '.join(first)[:300]})") from e
    return module.eval().requires_grad_(False)


class TAESDPreview:
    """Full-resolution previews from the family's TAESD decoder (internal-space latents in).

    Args:
        fmt (`LatentFormat`): the model family (selects the file and the channel count).
        path (`str` or `Path`, *optional*): the decoder file; found with `find_taesd_decoder` when omitted.
        search_dirs (`Iterable`, *optional*): host folders to search first (ComfyUI:
            ``folder_paths.get_folder_paths("vae_approx")``; WebUI: ``models/VAE-taesd``).
        model_roots (`Sequence`, *optional*): ComfyUI / WebUI install folders for the weights manager.

    Raises:
        `GuardUnavailable`: the family has no TAESD, or the file is missing or does not fit.
    """

    name = "taesd"
    upscale = 8

    def __init__(self, fmt: LatentFormat, path: str | Path | None = None, *,
                 search_dirs: Iterable[str | Path] = (), model_roots: Sequence[str | Path] = ()):
        if fmt.taesd_decoder is None:
            raise GuardUnavailable(f"no TAESD decoder exists for {fmt.family}; use the linear preview decoder")
        self.format = fmt
        self.path = Path(path) if path is not None else find_taesd_decoder(
            fmt.taesd_decoder, search_dirs, model_roots=model_roots)
        # Channels-last (NHWC) convolutions: 20-40 % faster on CPU (oneDNN), and cuDNN prefers them too.
        self._module = load_taesd_decoder(self.path, fmt.channels).to(memory_format=torch.channels_last)
        logger.debug("TAESD decoder %s loaded", self.path)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        # float32 everywhere: the decoder is tiny, and CPU half-precision convolutions are slow.
        if next(self._module.parameters()).device != x0.device:
            self._module = self._module.to(x0.device)
        with torch.inference_mode():
            return self._module(x0.float().contiguous(memory_format=torch.channels_last)).clamp(0.0, 1.0)


class VAEPreview:
    """Previews from the host's full VAE.

    Args:
        decode_fn (`Callable`): takes internal-space x0 ``[N, C, h, w]`` (float32, on x0's device)
            and returns images in [0, 1]. It must convert to raw space (and to the VAE's dtype)
            itself, e.g. ComfyUI: ``lambda x0: vae.decode(model.model.process_latent_out(x0))``.
        channels_last (`bool`, *optional*, defaults to `True`): `decode_fn` returns ``[N, H, W, 3]``
            (ComfyUI IMAGE); `False` for ``[N, 3, H, W]`` (diffusers, A1111 ``decode_first_stage``
            after ``(x + 1) / 2``).
        upscale (`int`, *optional*, defaults to 8): image pixels per latent pixel.
    """

    name = "vae"

    def __init__(self, decode_fn: Callable[[torch.Tensor], torch.Tensor], *, channels_last: bool = True,
                 upscale: int = 8):
        self._decode_fn = decode_fn
        self.channels_last = channels_last
        self.upscale = upscale

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            images = torch.as_tensor(self._decode_fn(x0)).float()
        if images.ndim != 4 or images.shape[-1 if self.channels_last else 1] != 3:
            layout = "[N, H, W, 3]" if self.channels_last else "[N, 3, H, W]"
            raise ValueError(f"the host VAE returned shape {list(images.shape)}, expected {layout}")
        return (images.movedim(-1, 1) if self.channels_last else images).clamp(0.0, 1.0)


def make_decoder(fmt: LatentFormat, preference: str = "auto", *,
                 search_dirs: Iterable[str | Path] = (),
                 model_roots: Sequence[str | Path] = ()) -> PreviewDecoder:
    """The decoder a policy asks for: ``"taesd"`` (required), ``"linear"``, or ``"auto"`` (TAESD when
    its file is found, else linear, as ComfyUI does).

    Raises:
        `GuardUnavailable`: ``"taesd"`` and the decoder cannot load; or ``"auto"`` and a decoder
            file is there but does not load (the user installed it: previews must not quietly
            become the coarser linear ones).
        `ValueError`: unknown preference.
    """
    if preference not in DECODER_CHOICES:
        raise ValueError(f"preview decoder '{preference}' is not one of {', '.join(DECODER_CHOICES)}")
    if preference == "linear":
        return LinearPreview(fmt)
    if preference == "auto":
        if fmt.taesd_decoder is None:  # the family has none (the video families)
            return LinearPreview(fmt)
        try:
            path = find_taesd_decoder(fmt.taesd_decoder, search_dirs, model_roots=model_roots)
        except GuardUnavailable as e:
            logger.info("using the linear preview decoder: %s", e)
            return LinearPreview(fmt)
        return TAESDPreview(fmt, path)
    return TAESDPreview(fmt, search_dirs=search_dirs, model_roots=model_roots)


def frame_batch(x0: torch.Tensor, max_frames: int) -> tuple[torch.Tensor, int]:
    """Flatten a batch to 2-D frames: ``[B,C,H,W]`` stays; ``[B,C,T,H,W]`` → ``[B*k, C, H, W]`` with
    up to `max_frames` evenly spaced frames per item (first and last included).

    Returns:
        (`frames`, `k`): item ``i`` owns ``frames[i*k:(i+1)*k]``.
    """
    if x0.ndim == 2 + IMAGE_DIMENSIONS:
        return x0, 1
    count = x0.shape[2]
    k = max(1, min(count, max_frames))
    index = torch.linspace(0, count - 1, k, device=x0.device).round().long()
    picked = x0.index_select(2, index).movedim(2, 1)
    return picked.reshape(x0.shape[0] * k, x0.shape[1], *x0.shape[3:]), k


def preview_images(decoder: PreviewDecoder, x0: torch.Tensor, *, size: int = 0, max_frames: int = 1,
                   shrink_latent: bool = False) -> list[list[Any]]:
    """Decode x0 and return, per batch item, its frames as RGB ``uint8`` numpy ``(H, W, 3)`` arrays.

    Args:
        decoder (`PreviewDecoder`): see the module docstring for the latent space it expects.
        x0 (`torch.Tensor`): internal-space ``[B, C, h, w]`` or video ``[B, C, T, h, w]``.
        size (`int`, *optional*): downscale so the longer side is at most `size` px (0: as decoded).
            Smaller previews (linear: latent resolution) are not upscaled.
        max_frames (`int`, *optional*): video frames previewed per item.
        shrink_latent (`bool`, *optional*): for upscaling decoders (TAESD, VAE), area-average the
            latent first so the decoder outputs about `size` px instead of full resolution: TAESD's
            cost grows with output pixels (≈280 GMAC for a 1024² image, ≈27 GMAC at 320²), and the
            classifier reads previews at `size` anyway. Fine detail is lost, as in a smaller image.

    Returns:
        `list[list[numpy.ndarray]]`: ``B`` lists of 1 (image) or up to `max_frames` (video) images.

    Raises:
        `ValueError`: the decoder returned another number of images than it was given latents, or
            NaN / infinite values.
    """
    frames, per_item = frame_batch(x0.detach(), max_frames)
    frames = torch.nan_to_num(frames.float())
    if shrink_latent and size > 0 and decoder.upscale > 1:
        frames = _shrink(frames, math.ceil(size / decoder.upscale))
    out: list[Any] = []
    for start in range(0, frames.shape[0], MAX_DECODE_BATCH):
        chunk = frames[start:start + MAX_DECODE_BATCH]
        rgb = decoder.decode(chunk)
        # A host VAE is a callable we do not control: too few images would leave items unjudged,
        # and NaN (fp16 overflow) would become a black, "clean" preview.
        if rgb.shape[0] != chunk.shape[0]:
            raise ValueError(f"the decoder returned {rgb.shape[0]} images for {chunk.shape[0]} latents")
        if not bool(rgb.isfinite().all()):
            raise ValueError("the decoder returned NaN or infinite values")
        out.extend(_to_uint8(_resize(rgb, size)))
    return [out[i:i + per_item] for i in range(0, len(out), per_item)]


def _conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


def _native_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderTiny`` → madebyollin layout: ``decoder.layers.N`` is ``N+1`` (diffusers
    applies the clamp in ``forward`` instead of as layer 0); encoder keys are dropped.

    Raises:
        `ValueError`: a ``decoder.layers.`` key without a layer number.
    """
    prefix = "decoder.layers."
    if not any(k.startswith(prefix) for k in state):
        return state
    out = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, _, rest = key[len(prefix):].partition(".")
            if not index.isdecimal():
                raise ValueError(f"key {key!r} has no layer number")
            out[f"{int(index) + 1}.{rest}"] = value
    return out


def _shrink(latent: torch.Tensor, side: int) -> torch.Tensor:
    height, width = latent.shape[-2:]
    if max(height, width) <= side:
        return latent
    factor = side / max(height, width)
    target = (max(1, round(height * factor)), max(1, round(width * factor)))
    return nn.functional.interpolate(latent, size=target, mode="area")


def _resize(rgb: torch.Tensor, size: int) -> torch.Tensor:
    height, width = rgb.shape[-2:]
    if size <= 0 or max(height, width) <= size:
        return rgb  # never upscale: detectors resize to their input anyway, and it costs time
    factor = size / max(height, width)
    target = (max(1, round(height * factor)), max(1, round(width * factor)))
    return nn.functional.interpolate(rgb, size=target, mode="bilinear", align_corners=False,
                                     antialias=factor < 1)


def _to_uint8(rgb: torch.Tensor) -> Sequence[Any]:
    array = rgb.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8).movedim(1, -1).cpu().numpy()
    return list(array)
