"""The preview stage: decode x0 to small RGB previews and judge them with the image guard.

`check_latent` is what the in-loop monitor runs at each scheduled step and what
``sdguard preview-latent`` runs on saved latents; `censor_preview` hides what a verdict found,
with the same function and style as the final image censor.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .policy import Policy
from .verdict import Verdict, unavailable

if TYPE_CHECKING:
    import torch

    from .latent_preview import PreviewDecoder

logger = logging.getLogger("sdguard.preview")

STAGE = "preview"
Checker = Callable[..., "list[Verdict]"]  # check_images(images, policy, stage="preview")


@dataclass(frozen=True)
class LatentCheck:
    """`check_latent`'s result: one verdict and the decoded previews per batch item, and the cost."""

    verdicts: tuple[Verdict, ...]
    previews: tuple[tuple[Any, ...], ...]
    decode_ms: float
    classify_ms: float


def check_latent(x0: torch.Tensor, policy: Policy, decoder: PreviewDecoder, *,
                 checker: Checker | None = None) -> LatentCheck:
    """Decode x0 with `decoder` and classify every item (every previewed frame of a video item)
    at the preview stage, with the policy's ``[monitor]`` preview settings. Never raises for a
    failing decoder or classifier: their items get a blocking ``guard_unavailable`` verdict.

    Args:
        x0 (`torch.Tensor`): internal-space latents ``[B, C, h, w]`` or ``[B, C, T, h, w]``.
        policy (`Policy`): decides; its ``[monitor]`` sets ``preview_size``, ``max_frames``, ``shrink_latent``.
        decoder (`PreviewDecoder`): see `sdguard.latent_preview`.
        checker (`Callable`, *optional*): defaults to the image guard's `check_images` over
            the policy's ``[monitor] backends``.

    Returns:
        `LatentCheck`: a video item's verdict merges its frames' (the worst frame counts);
        `previews` is empty when decoding failed.
    """
    return judge_previews(decode_previews(x0, policy, decoder), policy, checker=checker)


@dataclass(frozen=True)
class Decoded:
    """`decode_previews`' result: per item, its previewed frames; or the verdict of a failed decode."""

    previews: tuple[tuple[Any, ...], ...]
    items: int
    decode_ms: float
    failure: Verdict | None = None


def decode_previews(x0: torch.Tensor, policy: Policy, decoder: PreviewDecoder) -> Decoded:
    """The first half of `check_latent` (runs where x0 lives, e.g. on the GPU; never raises)."""
    from .latent_preview import preview_images

    settings = policy.section("monitor")
    started = time.perf_counter()
    error: BaseException | str
    try:
        if bool(x0.isfinite().all()):
            previews = preview_images(decoder, x0, size=int(settings["preview_size"]),
                                      max_frames=max(1, int(settings["max_frames"])),
                                      shrink_latent=bool(settings["shrink_latent"]))
            return Decoded(tuple(tuple(item) for item in previews), len(previews),
                           (time.perf_counter() - started) * 1000)
        # A diverged run (fp16 overflow, a broken sampler) cannot be judged: fail closed. Expected
        # in the field, so a warning rather than a traceback at every check.
        error = "x0 has NaN or infinite values"
        logger.warning("preview not decoded: %s", error)
    except Exception as e:  # noqa: BLE001 - a decoder that fails must block, never pass
        logger.exception("preview decoder failed")
        error = e
    failed = unavailable(STAGE, policy, f"the {getattr(decoder, 'name', 'preview')} preview decoder", error)
    return Decoded((), int(x0.shape[0]), (time.perf_counter() - started) * 1000, failed)


def judge_previews(decoded: Decoded, policy: Policy, *, checker: Checker | None = None) -> LatentCheck:
    """The second half of `check_latent`: classify (CPU; safe to run in a worker thread)."""
    started = time.perf_counter()
    if decoded.failure is not None:
        verdicts = [decoded.failure] * decoded.items
    else:
        verdicts = _classify(decoded.previews, policy, checker)
    return LatentCheck(tuple(verdicts), decoded.previews, decoded.decode_ms,
                       (time.perf_counter() - started) * 1000)


def _classify(previews: tuple[tuple[Any, ...], ...], policy: Policy, checker: Checker | None) -> list[Verdict]:
    flat = [frame for item in previews for frame in item]
    try:
        if checker is None:
            from .image_guard import check_images
            checker = functools.partial(check_images, only=policy.section("monitor")["backends"])
        frame_verdicts = list(checker(flat, policy, stage=STAGE))
        if len(frame_verdicts) != len(flat):
            raise RuntimeError(f"{len(frame_verdicts)} verdicts for {len(flat)} previews")
        # A custom checker returning something else (None, dicts) must block here: failing later,
        # outside this guard, would raise past the monitor and use up the scheduled steps unjudged.
        wrong = [type(v).__name__ for v in frame_verdicts if not isinstance(v, Verdict)]
        if wrong:
            raise TypeError(f"the checker returned a {wrong[0]}, not a Verdict")
        out, start = [], 0
        for item in previews:
            frames = frame_verdicts[start:start + len(item)]
            out.append(frames[0].merge(*frames[1:]))
            start += len(item)
    except Exception as e:  # noqa: BLE001 - a classifier that fails must block, never pass
        logger.exception("preview classifier failed")
        return [unavailable(STAGE, policy, "the preview classifier", e) for _ in previews]
    return out


def censor_preview(preview: Any, verdict: Verdict, policy: Policy) -> Any:
    """`preview` censored as the final image would be (the policy's ``[image]`` censor style)."""
    from .censor import censor_image

    image = policy.section("image")
    return censor_image(preview, verdict, image["censor_style"], image["censor_margin"])


def latent_bytes(x0: torch.Tensor) -> bytes:
    """The raw bytes of a latent, for `hash_input` (any dtype, bfloat16 included, any device)."""
    import torch

    flat = x0.detach().contiguous().cpu().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()
