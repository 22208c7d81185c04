"""Per-family latent formats: channels, raw↔internal scaling, TAESD file name, latent→RGB factors.

The data lives in ``data/latent_formats.toml`` (numbers from ComfyUI's ``comfy/latent_formats.py``);
this module only knows its shape. Two latent spaces matter:

- *raw*: what the VAE encoder produces and the VAE decoder takes (ComfyUI's saved ``.latent``
  files, the input of ``VAE.decode``).
- *internal*: what the sampler works in, ``(raw - shift) * scale`` (or per-channel mean/std).
  Every host hands the in-loop monitor x0 in this space, and both cheap previewers (the linear
  factors and TAESD) decode it directly.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 hosts (A1111/Forge)
    import tomli as tomllib

IMAGE_DIMENSIONS = 2  # [B, C, H, W]
VIDEO_DIMENSIONS = 3  # [B, C, T, H, W]
RGB = 3


@dataclass(frozen=True)
class LatentFormat:
    """One model family's latent space.

    Args:
        family (`str`): the key hosts and policies use (``"sd15"``, ``"sdxl"``, ``"sd3"``, ``"flux"``, ...).
        name (`str`): for people.
        channels (`int`): latent channels.
        dimensions (`int`): 2 for image latents ``[B,C,H,W]``, 3 for video ``[B,C,T,H,W]``.
        scale (`float`), shift (`float`): ``internal = (raw - shift) * scale``.
        mean (`tuple[float, ...]`, *optional*), std (`tuple[float, ...]`, *optional*): per-channel
            normalisation, ``internal = (raw - mean) * scale / std`` (Wan); replaces `shift`.
        taesd_decoder (`str`, *optional*): file stem of the family's TAESD decoder, ``None`` if none exists.
        rgb_factors (`tuple[tuple[float, float, float], ...]`): channels × RGB, applied to internal latents.
        rgb_bias (`tuple[float, float, float]`): added after the factors; the result is RGB in [-1, 1].
    """

    family: str
    name: str
    channels: int
    dimensions: int
    scale: float
    shift: float
    rgb_factors: tuple[tuple[float, float, float], ...]
    rgb_bias: tuple[float, float, float]
    taesd_decoder: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def process_in(self, raw: Any) -> Any:
        """Raw VAE latent → the sampler's internal space (ComfyUI ``process_latent_in``).

        Args:
            raw (`torch.Tensor`): ``[B, C, ...]`` with ``C == self.channels``.
        """
        if self.mean is None:
            return (raw - self.shift) * self.scale
        mean, std = self._per_channel(raw)
        return (raw - mean) * self.scale / std

    def process_out(self, internal: Any) -> Any:
        """Internal latent → raw VAE latent (ComfyUI ``process_latent_out``); do this before a VAE decode."""
        if self.mean is None:
            return internal / self.scale + self.shift
        mean, std = self._per_channel(internal)
        return internal * std / self.scale + mean

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise `ValueError` unless `shape` is a batch of this family's latents (4-D, or 5-D video)."""
        if len(shape) not in (2 + IMAGE_DIMENSIONS, 2 + VIDEO_DIMENSIONS):
            raise ValueError(f"a {self.family} latent must be [B,C,H,W] or [B,C,T,H,W]; got shape {list(shape)}")
        if shape[1] != self.channels:
            guess = families_with_channels(shape[1])
            hint = f" (families with {shape[1]} channels: {', '.join(guess)})" if guess else ""
            raise ValueError(f"a {self.family} latent has {self.channels} channels; got {shape[1]} "
                             f"in shape {list(shape)}{hint}")

    def _per_channel(self, x: Any) -> tuple[Any, Any]:
        view = (1, self.channels) + (1,) * (x.ndim - 2)
        mean = x.new_tensor(self.mean).view(view)
        std = x.new_tensor(self.std).view(view)
        return mean, std


def latent_format(family: str) -> LatentFormat:
    """The format of `family` (a key or an alias of ``data/latent_formats.toml``, case-insensitive).

    Raises:
        `ValueError`: unknown family; the message lists the known ones.

    Example:
        >>> latent_format("sd15").scale
        0.18215
    """
    key = family.strip().lower()
    formats = _formats()
    if key in formats:
        return formats[key]
    for fmt_key, aliases in _aliases().items():
        if key in aliases:
            return formats[fmt_key]
    raise ValueError(f"unknown model family '{family}' (known: {', '.join(families())})")


def families() -> tuple[str, ...]:
    """The family keys, in file order."""
    return tuple(_formats())


def families_with_channels(channels: int) -> tuple[str, ...]:
    """Families whose latents have `channels` channels (to suggest a fix for a wrong ``family``)."""
    return tuple(k for k, f in _formats().items() if f.channels == channels)


@lru_cache(maxsize=1)
def _table() -> Mapping[str, Any]:
    text = resources.files(__package__).joinpath("data", "latent_formats.toml").read_text("utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def _formats() -> dict[str, LatentFormat]:
    out = {}
    for key, row in _table().items():
        fmt = LatentFormat(
            family=key, name=row["name"], channels=row["channels"], dimensions=row["dimensions"],
            scale=float(row["scale"]), shift=float(row["shift"]),
            rgb_factors=tuple(tuple(float(v) for v in r) for r in row["rgb_factors"]),  # type: ignore[misc]
            rgb_bias=tuple(float(v) for v in row["rgb_bias"]),  # type: ignore[arg-type]
            taesd_decoder=row["taesd_decoder"] or None,
            mean=tuple(row["mean"]) if "mean" in row else None,
            std=tuple(row["std"]) if "std" in row else None,
        )
        if len(fmt.rgb_factors) != fmt.channels or len(fmt.rgb_bias) != RGB:
            raise ValueError(f"latent_formats.toml [{key}]: rgb_factors must be {fmt.channels}×3 "
                             f"and rgb_bias 3 numbers")
        out[key] = fmt
    return out


@lru_cache(maxsize=1)
def _aliases() -> dict[str, tuple[str, ...]]:
    return {key: tuple(a.lower() for a in row.get("aliases", ())) for key, row in _table().items()}
