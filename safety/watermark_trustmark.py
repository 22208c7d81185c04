"""Optional TrustMark backend (Adobe, MIT; variant Q, BCH_5) when its package and weights are local.

`trustmark` is not a dependency of sdguard: it needs torch and numpy<2, which clashes with
ComfyUI's numpy 2. Weights are never downloaded here: they are found with `weights.locate`
(fetch them once with ``sdguard weights fetch trustmark_q_encoder`` etc.). TrustMark's own
constructor downloads missing files and always loads its remover too, so this module loads the
encoder and decoder itself through TrustMark's `load_model`, with the download step disabled.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .errors import GuardUnavailable
from .watermark import WatermarkResult

if TYPE_CHECKING:
    import numpy as np

SCHEME = "trustmark-Q-BCH_5"
WEIGHTS = {"config": "trustmark_q_config", "encoder": "trustmark_q_encoder", "decoder": "trustmark_q_decoder"}
PAYLOAD_BITS = 48           # of BCH_5's 61 data bits; the rest are zero
_SECRET_LEN = 100
_BCH5_DATA_BITS = 61
_STRENGTH = 0.95


def embed(rgb: np.ndarray, payload: bytes) -> np.ndarray:
    """Embed a 6-byte payload with TrustMark-Q.

    Raises:
        GuardUnavailable: trustmark is not installed or its weights are not on disk.
    """
    import numpy as np
    from PIL import Image

    model = _model()
    bits = "".join(f"{b:08b}" for b in payload).ljust(_BCH5_DATA_BITS, "0")
    out = model.encode(Image.fromarray(rgb), bits, MODE="binary", WM_STRENGTH=_STRENGTH)
    return np.asarray(out.convert("RGB"))


def detect(rgb: np.ndarray) -> WatermarkResult:
    """Decode a TrustMark-Q mark; `confidence` is 1.0 when BCH decoding succeeded (TrustMark gives no score).

    Raises:
        GuardUnavailable: trustmark is not installed or its weights are not on disk.
    """
    from PIL import Image

    secret, detected, _version = _model().decode(Image.fromarray(rgb), MODE="binary")
    if not detected:
        return WatermarkResult(False, None, 0.0, scheme=SCHEME)
    payload = int(str(secret)[:PAYLOAD_BITS], 2).to_bytes(PAYLOAD_BITS // 8, "big")
    return WatermarkResult(True, payload.hex(), 1.0, scheme=SCHEME)


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    try:
        from trustmark import TrustMark
    except ImportError as e:
        raise GuardUnavailable("the TrustMark backend needs the 'trustmark' package (pip install trustmark; "
                               f"it requires torch and numpy<2) ({e})") from None
    from .weights import locate

    try:
        paths = {part: str(locate(name)) for part, name in WEIGHTS.items()}
    except FileNotFoundError as e:
        raise GuardUnavailable(f"TrustMark weights are not on disk: {e}") from None
    model = TrustMark.__new__(TrustMark)
    model.device, model.model_type, model.use_ECC, model.secret_len = "cpu", "Q", True, _SECRET_LEN
    model.enctyp = TrustMark.Encoding.BCH_5
    model.check_and_download = lambda filename: None  # never fetch from the network at run time
    from trustmark.datalayer import DataLayer

    model.ecc = DataLayer(_SECRET_LEN, verbose=False, encoding_mode=model.enctyp)
    model.decoder = model.load_model(paths["config"], paths["decoder"], "cpu", _SECRET_LEN, part="decoder")
    model.encoder = model.load_model(paths["config"], paths["encoder"], "cpu", _SECRET_LEN, part="encoder")
    return model
