"""Optional image backends with user-provided weights (CompVis safety checker, WD14 tagger, HF
image classifier), on tiny models built here: loading, preprocessing conventions, score direction,
label mapping, and a clear GuardUnavailable when the files are missing."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from sdguard.errors import GuardUnavailable

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SDGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SDGUARD_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("SDGUARD_MODEL_ROOTS", raising=False)


def solid(rgb, size=(64, 64)):
    return np.full((*size, 3), rgb, dtype=np.uint8)


# -- CompVis safety checker ------------------------------------------------------------------

PROJECTION = 16


def write_checker(folder: Path, *, concepts=None, thresholds=None, special=None, special_thresholds=None,
                  suffix=".safetensors", seed=0) -> tuple[Path, Path]:
    """A tiny CLIP image tower + projection in the CompVis checkpoint layout."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPVisionModel

    torch.manual_seed(seed)
    config = CLIPConfig(vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                           num_attention_heads=4, image_size=32, patch_size=8),
                        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                         num_attention_heads=4),
                        projection_dim=PROJECTION)
    tower = CLIPVisionModel(config.vision_config)
    state = {}
    for key, value in tower.state_dict().items():
        # The real file (saved by transformers 4.x) nests the tower as vision_model.vision_model.*
        key = key if key.startswith("vision_model.") else f"vision_model.{key}"
        state[f"vision_model.{key}"] = value.contiguous()
    state["visual_projection.weight"] = torch.randn(PROJECTION, 32)
    state["concept_embeds"] = concepts if concepts is not None else torch.randn(17, PROJECTION)
    state["concept_embeds_weights"] = thresholds if thresholds is not None else torch.full((17,), 1.5)
    state["special_care_embeds"] = special if special is not None else torch.randn(3, PROJECTION)
    state["special_care_embeds_weights"] = (special_thresholds if special_thresholds is not None
                                            else torch.full((3,), 1.5))
    folder.mkdir(parents=True, exist_ok=True)
    weights_path = folder / f"model{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(weights_path))
    else:
        torch.save(state, weights_path)
    config_path = folder / "config.json"
    config.to_json_file(str(config_path))
    return weights_path, config_path


def reference_margins(embed, concepts, thresholds, special, special_thresholds):
    """diffusers' loop form of the rule (StableDiffusionSafetyChecker.forward), for one image."""
    def cos(a, b):
        return float(a @ b / (a.norm() * b.norm()))

    adjustment = 0.0
    special_scores = []
    for i in range(len(special)):
        score = cos(embed, special[i]) - float(special_thresholds[i]) + adjustment
        special_scores.append(score)
        if score > 0:
            adjustment = 0.01
    concept_scores = [cos(embed, concepts[i]) - float(thresholds[i]) + adjustment for i in range(len(concepts))]
    # The loop also adds the 0.01 to later special-care scores (forward_onnx does not); only whether
    # one fired matters to the decision, so the raw largest special-care margin is what we compare.
    raw_special = max(cos(embed, special[i]) - float(special_thresholds[i]) for i in range(len(special)))
    assert (raw_special > 0) == any(score > 0 for score in special_scores)
    return max(concept_scores), raw_special


def test_compvis_score_direction_and_boundary(tmp_path):
    from sdguard.image_backends.compvis import CompVisBackend

    probe = write_checker(tmp_path / "probe")
    a, b = RNG.integers(0, 256, (48, 40, 3), dtype=np.uint8), solid((20, 200, 90))
    embeds = CompVisBackend(*probe).embed([a, b])
    similarity = float(embeds[0] @ embeds[1])
    assert similarity < 0.999  # the two images must be told apart for this test to mean anything

    concepts = torch.randn(17, PROJECTION)
    concepts[4] = embeds[0]
    thresholds = torch.full((17,), 1.5)
    thresholds[4] = (1 + similarity) / 2  # halfway between image a (cos 1) and image b
    backend = CompVisBackend(*write_checker(tmp_path / "real", concepts=concepts, thresholds=thresholds))
    flagged, clean = backend.detect([a, b])
    assert flagged.backend == "compvis"
    assert flagged.scores["sexual"] > 0.5 > clean.scores["sexual"]
    assert flagged.tags["concept"] == pytest.approx((1 - similarity) / 2, abs=1e-4)


def test_compvis_vectorised_rule_matches_diffusers_loop(tmp_path):
    from sdguard.image_backends.compvis import CompVisBackend

    special = torch.randn(3, PROJECTION)
    backend = CompVisBackend(*write_checker(tmp_path / "m", thresholds=torch.rand(17) * 0.4,
                                            special=special, special_thresholds=torch.rand(3) * 0.4))
    embeds = torch.randn(6, PROJECTION)
    embeds[0] = special[1]  # one image certainly triggers a special-care concept (+0.01)
    embeds = embeds / embeds.norm(dim=1, keepdim=True)
    concept, care = backend.margins(embeds)
    for i in range(len(embeds)):
        want = reference_margins(embeds[i], backend.concepts, backend.thresholds, backend.special,
                                 backend.special_thresholds)
        assert (concept[i], care[i]) == pytest.approx(want, abs=1e-5)
    assert care[0] > 0


def test_compvis_loads_pickle_bin_and_rejects_other_files(tmp_path):
    from sdguard.image_backends.compvis import CompVisBackend

    backend = CompVisBackend(*write_checker(tmp_path / "bin", suffix=".bin"))
    (result,) = backend.detect([solid((1, 2, 3))])
    assert 0.0 <= result.scores["sexual"] <= 1.0
    from safetensors.torch import save_file

    save_file({"vision_model.x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(GuardUnavailable, match="not a CompVis safety checker"):
        CompVisBackend(tmp_path / "other.safetensors", tmp_path / "bin" / "config.json")


def test_compvis_load_uses_the_weights_manager(tmp_path, monkeypatch):
    from sdguard.image_backends import compvis

    with pytest.raises(GuardUnavailable) as e:
        compvis.load()
    assert "stable-diffusion-safety-checker/model.safetensors" in str(e.value)
    assert "sdguard weights fetch compvis_safety_checker" in str(e.value)
    write_checker(tmp_path / "w" / "stable-diffusion-safety-checker")
    monkeypatch.setenv("SDGUARD_WEIGHTS_DIR", str(tmp_path / "w"))
    assert compvis.load().detect([solid((9, 9, 9))])[0].backend == "compvis"


# -- WD14 tagger -----------------------------------------------------------------------------
# onnx is not a dependency, so the tiny tagger is written as protobuf bytes by hand: ReduceMean
# over H and W, then one dense layer and a sigmoid, in SmilingWolf's NHWC layout.

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _len(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode() if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _tensor(name: str, array: np.ndarray) -> bytes:
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, 1) + _len(8, name) + _len(9, array.astype("<f4").tobytes())


def _value_info(name: str, dims) -> bytes:
    shape = b"".join(_len(1, _len(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _len(1, name) + _len(2, _len(1, _int(1, 1) + _len(2, shape)))


def _node(op: str, inputs, outputs, attributes=b"") -> bytes:
    return b"".join(_len(1, i) for i in inputs) + b"".join(_len(2, o) for o in outputs) + _len(4, op) + attributes


def write_tagger(path: Path, weight: np.ndarray, bias: np.ndarray, *, batch="N", side=448) -> None:
    axes = _len(5, _len(1, "axes") + _int(8, 1) + _int(8, 2) + _int(20, 7)) \
        + _len(5, _len(1, "keepdims") + _int(3, 0) + _int(20, 2))
    graph = (_len(1, _node("ReduceMean", ["input_1:0"], ["mean"], axes))
             + _len(1, _node("MatMul", ["mean", "W"], ["mm"]))
             + _len(1, _node("Add", ["mm", "b"], ["logits"]))
             + _len(1, _node("Sigmoid", ["logits"], ["predictions_sigmoid"]))
             + _len(2, "tiny_tagger")
             + _len(5, _tensor("W", weight)) + _len(5, _tensor("b", bias))
             + _len(11, _value_info("input_1:0", [batch, side, side, 3]))
             + _len(12, _value_info("predictions_sigmoid", [batch, weight.shape[1]])))
    model = _int(1, 7) + _len(2, "sdguard-test") + _len(7, graph) + _len(8, _len(1, "") + _int(2, 13))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model)


TAGS = [("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9), ("1girl", 0), ("loli", 0)]


def write_tags(path: Path, tags=TAGS) -> None:
    rows = ["tag_id,name,category,count"] + [f"{i},{n},{c},100" for i, (n, c) in enumerate(tags)]
    path.write_text("\n".join(rows) + "\n")


def tiny_tagger(folder: Path, **kw) -> tuple[Path, Path]:
    """`explicit` fires on the red channel, `loli` on blue: BGR index 2 and 0 of the model input."""
    weight = np.zeros((3, len(TAGS)), np.float32)
    bias = np.full(len(TAGS), -12.75, np.float32)
    weight[2, 3] = 0.1   # R → explicit
    weight[0, 5] = 0.1   # B → loli
    weight[1, 2] = 0.1   # G → questionable
    bias[0] = 5.0        # general always
    model, tags = folder / "model.onnx", folder / "selected_tags.csv"
    write_tagger(model, weight, bias, **kw)
    write_tags(tags)
    return model, tags


def wd14_backend(model: Path, tags: Path):
    from sdguard.image_backends import onnx_session
    from sdguard.image_backends.wd14 import WD14Backend

    return WD14Backend(onnx_session(model), tags)


def test_wd14_reads_bgr_ratings_and_minor_tags(tmp_path):
    backend = wd14_backend(*tiny_tagger(tmp_path))
    red, blue, green, black = backend.detect([solid((255, 0, 0)), solid((0, 0, 255)),
                                              solid((0, 255, 0)), solid((0, 0, 0))])
    assert red.backend == "wd14"
    assert red.scores["sexual"] > 0.99 and red.scores["minor"] < 0.01  # RGB red reached the R input
    assert blue.scores["minor"] > 0.99 and blue.scores["sexual"] < 0.01
    assert green.scores["suggestive"] > 0.99 and green.scores["sexual"] < 0.01
    assert max(black.scores.values()) < 0.01
    assert "explicit" in red.tags and "general" in black.tags and "loli" not in black.tags


def test_wd14_pads_to_a_white_square(tmp_path):
    backend = wd14_backend(*tiny_tagger(tmp_path))
    wide = backend._preprocess(solid((0, 0, 0), size=(100, 300)))
    assert wide.shape == (448, 448, 3) and wide.dtype == np.float32
    assert wide[0, 0].tolist() == [255.0, 255.0, 255.0] and wide[224, 224].tolist() == [0.0, 0.0, 0.0]


def test_wd14_fixed_batch_model_runs_per_image(tmp_path):
    backend = wd14_backend(*tiny_tagger(tmp_path, batch=1))
    results = backend.detect([solid((255, 0, 0)), solid((0, 0, 255))])
    assert [round(r.scores["sexual"]) for r in results] == [1, 0]


def test_wd14_rejects_a_tag_list_that_does_not_match(tmp_path):
    model, tags = tiny_tagger(tmp_path)
    write_tags(tags, TAGS[:-1])
    with pytest.raises(GuardUnavailable, match="lists 5 tags but the model outputs 6"):
        wd14_backend(model, tags)
    tags.write_text("id,label\n0,x\n")
    with pytest.raises(GuardUnavailable, match="expected columns"):
        wd14_backend(model, tags)


def test_wd14_load_uses_the_weights_manager(tmp_path, monkeypatch):
    from sdguard.image_backends import wd14

    with pytest.raises(GuardUnavailable, match="wd-vit-tagger-v3/model.onnx"):
        wd14.load()
    tiny_tagger(tmp_path / "comfy" / "models" / "sdguard" / "wd-vit-tagger-v3")
    monkeypatch.setenv("SDGUARD_MODEL_ROOTS", str(tmp_path / "comfy"))
    assert wd14.load().detect([solid((255, 0, 0))])[0].scores["sexual"] > 0.99


# -- HF image classifier ---------------------------------------------------------------------

def write_classifier(folder: Path, id2label: dict[int, str], bias: list[float], *, preprocessor=None) -> Path:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=37, num_labels=len(id2label), id2label=id2label,
                       label2id={v: k for k, v in id2label.items()})
    model = ViTForImageClassification(config)
    with torch.no_grad():  # logits = bias: the test decides which class wins
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(str(folder))
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder


@pytest.mark.parametrize("id2label, bias, sexual", [
    ({0: "normal", 1: "nsfw"}, [0.0, 5.0], True),
    ({0: "normal", 1: "nsfw"}, [5.0, 0.0], False),
    ({0: "nsfw", 1: "normal"}, [5.0, 0.0], True),  # the label, not the index, decides
])
def test_vit_maps_labels_to_categories(tmp_path, id2label, bias, sexual):
    from sdguard.image_backends.vit import VitBackend

    backend = VitBackend(write_classifier(tmp_path / "m", id2label, bias))
    (result,) = backend.detect([solid((10, 200, 30))])
    assert result.backend == "vit"
    assert (result.scores["sexual"] > 0.99) is sexual
    assert result.tags["nsfw"] + result.tags["normal"] == pytest.approx(1.0)


def test_vit_sums_classes_of_one_category(tmp_path):
    from sdguard.image_backends.vit import VitBackend

    labels = {0: "drawings", 1: "hentai", 2: "neutral", 3: "porn", 4: "sexy"}
    backend = VitBackend(write_classifier(tmp_path / "m", labels, [0.0, 2.0, 0.0, 2.0, 1.0]))
    (result,) = backend.detect([solid((0, 0, 0))])
    assert result.scores["sexual"] == pytest.approx(result.tags["hentai"] + result.tags["porn"])
    assert result.scores["suggestive"] == pytest.approx(result.tags["sexy"])


def test_vit_follows_preprocessor_config(tmp_path):
    from sdguard.image_backends.vit import VitBackend

    prep = {"size": {"height": 32, "width": 32}, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5],
            "rescale_factor": 1 / 255, "do_normalize": True, "resample": 3}
    backend = VitBackend(write_classifier(tmp_path / "m", {0: "normal", 1: "nsfw"}, [0, 0], preprocessor=prep))
    assert backend._prep["size"] == (32, 32) and backend._prep["mean"] == (0.1, 0.2, 0.3)
    results = backend.detect([solid((255, 255, 255)), solid((0, 0, 0), size=(20, 90))])
    assert len(results) == 2


def test_vit_refuses_a_model_whose_labels_feed_nothing(tmp_path):
    from sdguard.image_backends.vit import VitBackend

    with pytest.raises(GuardUnavailable, match="feeds a category"):
        VitBackend(write_classifier(tmp_path / "m", {0: "cat", 1: "dog"}, [0, 0]))
    with pytest.raises(GuardUnavailable, match="config.json is missing"):
        VitBackend(tmp_path / "empty")


def test_vit_load_uses_the_weights_manager(tmp_path, monkeypatch):
    from sdguard.image_backends import vit

    with pytest.raises(GuardUnavailable, match="nsfw_image_detection/model.safetensors"):
        vit.load()
    write_classifier(tmp_path / "w" / "nsfw_image_detection", {0: "normal", 1: "nsfw"}, [0.0, 5.0])
    monkeypatch.setenv("SDGUARD_WEIGHTS_DIR", str(tmp_path / "w"))
    assert vit.load().detect([solid((1, 1, 1))])[0].scores["sexual"] > 0.99


def test_varint_encoder_matches_protobuf_examples():
    """The hand-written ONNX encoder above rests on this (examples from the protobuf docs)."""
    assert _varint(1) == b"\x01" and _varint(150) == b"\x96\x01" and _varint(300) == struct.pack("BB", 0xAC, 0x02)


def test_wd14_feeds_the_image_guard_and_minor_sexual(tmp_path):
    """With the tagger enabled in a policy, explicit art with child tags is minor_sexual (blocked);
    child tags alone are allowed; explicit alone is acted on as sexual (public censors it)."""
    from sdguard import load_policy
    from sdguard.image_guard import check_image
    from sdguard.verdict import Action

    policy_path = tmp_path / "anime.toml"
    policy_path.write_text('extends = "public"\nname = "anime"\n'
                           '[image]\nbackends = ["wd14"]\nrequired = ["wd14"]\n[monitor]\nbackends = ["wd14"]\n')
    policy = load_policy(policy_path)
    backend = {"wd14": wd14_backend(*tiny_tagger(tmp_path / "m"))}
    magenta, blue, red = (check_image(solid(c), policy, backends=backend)
                          for c in ((255, 0, 255), (0, 0, 255), (255, 0, 0)))
    assert magenta.blocked and "minor_sexual" in {r.code for r in magenta.reasons}
    assert not blue.blocked
    assert red.action >= Action.CENSOR and {r.code for r in red.reasons} == {"sexual"}
