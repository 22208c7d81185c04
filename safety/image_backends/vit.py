"""A Hugging Face image classifier (e.g. ``Falconsai/nsfw_image_detection``, a ViT with labels
``normal`` / ``nsfw``) loaded from a local folder with transformers.

Class names feed categories through `LABEL_CATEGORIES` (``nsfw`` → ``sexual``, ``sexy`` →
``suggestive``, ...); other classes (``normal``, ``drawings``) feed nothing. Single-label models
are softmaxed and a category gets the summed probability of its classes; multi-label models are
sigmoided and a category gets its largest class.

User-provided weights (the manifest's ``vit_nsfw``: ``model.safetensors`` with ``config.json`` and,
optionally, ``preprocessor_config.json`` in the same folder). torch and transformers are imported
on load only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import weights
from ..errors import GuardUnavailable
from ..image_types import Detection

NAME = "vit"
WEIGHTS = "vit_nsfw"
LABEL_CATEGORIES: Mapping[str, str] = {
    "nsfw": "sexual", "porn": "sexual", "hentai": "sexual", "explicit": "sexual", "sexual": "sexual",
    "sexy": "suggestive", "suggestive": "suggestive",
}
PREPROCESSOR_FILE = "preprocessor_config.json"
# ViTImageProcessor's defaults, used when the folder has no preprocessor_config.json.
DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
DEFAULT_RESAMPLE = 2  # PIL bilinear
MULTI_LABEL = "multi_label_classification"


class VitBackend:
    """An image classifier on whole images."""

    name = NAME
    tileable = False
    needs_faces = False

    def __init__(self, model_dir: str | Path):
        """
        Args:
            model_dir (`str | Path`): a folder with ``config.json`` and the model weights.

        Raises:
            GuardUnavailable: torch/transformers missing, the folder incomplete, or no class of the
                model feeds a category (it would never report anything).
        """
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise GuardUnavailable(f"{model_dir / 'config.json'} is missing: put the model's config.json "
                                   f"beside its weights (sdguard weights fetch vit_nsfw_config)")
        try:
            import torch
            from transformers import AutoModelForImageClassification
        except ImportError as e:
            raise GuardUnavailable(f"the vit backend needs torch and transformers ({e}); "
                                   f"pip install transformers") from None
        self._torch = torch
        self.model = AutoModelForImageClassification.from_pretrained(str(model_dir), local_files_only=True).eval()
        labels = {int(i): str(n).lower() for i, n in self.model.config.id2label.items()}
        self._feeds = {i: LABEL_CATEGORIES[n] for i, n in labels.items() if n in LABEL_CATEGORIES}
        if not self._feeds:
            raise GuardUnavailable(f"{model_dir}: none of the classes {sorted(labels.values())} feeds a "
                                   f"category (known: {', '.join(sorted(LABEL_CATEGORIES))})")
        self.labels = labels
        self.multi_label = getattr(self.model.config, "problem_type", None) == MULTI_LABEL
        self._prep = _preprocessing(model_dir, self.model.config)

    def detect(self, images: Sequence[Any]) -> list[Detection]:
        """One `Detection` per RGB uint8 image: category scores and every class probability as tags."""
        if not images:
            return []
        torch = self._torch
        pixels = torch.from_numpy(_preprocess_batch(images, **self._prep))
        with torch.no_grad():
            logits = self.model(pixel_values=pixels).logits.float()
        probabilities = (logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)).tolist()
        return [self._detection(row) for row in probabilities]

    def _detection(self, probabilities: Sequence[float]) -> Detection:
        scores: dict[str, float] = {}
        combine = max if self.multi_label else sum  # independent classes vs. exclusive ones
        for index, category in self._feeds.items():
            scores[category] = combine((scores.get(category, 0.0), probabilities[index]))
        tags = {self.labels[i]: p for i, p in enumerate(probabilities)}
        return Detection(NAME, {c: min(1.0, s) for c, s in scores.items()}, tags=tags)


def _preprocessing(model_dir: Path, config: Any) -> dict[str, Any]:
    """Resize and normalisation from ``preprocessor_config.json``, else ViT's defaults."""
    path = model_dir / PREPROCESSOR_FILE
    spec = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    size = spec.get("size", getattr(config, "image_size", 224))
    if isinstance(size, Mapping):
        side = size.get("shortest_edge") or size.get("height")
        size = (int(size.get("width", side)), int(size.get("height", side)))
    else:
        size = (int(size), int(size))
    normalize = spec.get("do_normalize", True)
    return {"size": size, "resample": int(spec.get("resample", DEFAULT_RESAMPLE)),
            "scale": float(spec.get("rescale_factor", 1 / 255)) if spec.get("do_rescale", True) else 1.0,
            "mean": tuple(spec.get("image_mean", DEFAULT_MEAN)) if normalize else (0.0, 0.0, 0.0),
            "std": tuple(spec.get("image_std", DEFAULT_STD)) if normalize else (1.0, 1.0, 1.0)}


def _preprocess_batch(images: Sequence[Any], *, size: tuple[int, int], resample: int, scale: float,
                      mean: Sequence[float], std: Sequence[float]) -> Any:
    import numpy as np
    from PIL import Image

    out = []
    for image in images:
        picture = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize(size, resample)
        pixels = np.asarray(picture, dtype=np.float32) * scale
        out.append(((pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def load() -> VitBackend:
    """The registry's loader: the folder holding the manifest's ``vit_nsfw`` weights."""
    return VitBackend(weights.require(WEIGHTS).parent)
