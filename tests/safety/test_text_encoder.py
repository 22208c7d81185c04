"""The numpy MiniLM encoder's batching: packed tokens, token-budget batches, repeated prompts,
and per-prompt fidelity to sentence-transformers on the eval sets."""

from __future__ import annotations

import json
import random
import unicodedata
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("tokenizers")
pytest.importorskip("safetensors")

from sdguard import text_encoder  # noqa: E402

EVAL_DIR = Path("/work/shared/eval")
# Cosine per prompt against sentence-transformers below which the trained head's figures could move.
MIN_COSINE = 0.9995
MIXED = ["a cat", "", "two dogs playing in the snow near a red barn at dawn",
         ", ".join(["highly detailed portrait of a knight in a misty forest"] * 6), "x",
         "a bowl of fruit", "ÜBER café — 東京 🚀", "oil painting of a lighthouse in a storm, dramatic"]


@pytest.fixture(scope="module")
def encoder():
    return text_encoder.load_encoder()


def test_batches_match_prompts_encoded_alone(encoder, monkeypatch):
    # A small budget splits MIXED into several packed batches of different lengths.
    monkeypatch.setattr(text_encoder, "BATCH_TOKENS", 24)
    batched = encoder.encode(MIXED)
    alone = np.stack([encoder.encode([p])[0] for p in MIXED])
    np.testing.assert_allclose(batched, alone, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_batches_never_pass_the_token_budget(encoder, monkeypatch):
    monkeypatch.setattr(text_encoder, "BATCH_TOKENS", 30)
    seen = []
    forward = encoder._forward
    monkeypatch.setattr(encoder, "_forward", lambda batch: seen.append(batch) or forward(batch))
    encoder.encode(MIXED)
    longest = max(len(ids) for ids in encoder.tokenize(MIXED))
    assert len(seen) > 1
    # A prompt longer than the budget goes alone; every other batch stays within it.
    assert all(sum(map(len, batch)) <= 30 or len(batch) == 1 for batch in seen)
    assert max(len(ids) for batch in seen for ids in batch) == longest
    assert sorted(len(ids) for batch in seen for ids in batch) == sorted(map(len, encoder.tokenize(MIXED)))


def test_repeated_prompts_are_encoded_once(encoder, monkeypatch):
    seen = []
    forward = encoder._forward
    monkeypatch.setattr(encoder, "_forward", lambda batch: seen.append(batch) or forward(batch))
    prompts = ["a red bicycle", "a lighthouse", "a red bicycle", "a red bicycle", "a lighthouse"]
    out = encoder.encode(prompts)
    assert sum(len(batch) for batch in seen) == 2
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[1], out[4])
    assert not np.allclose(out[0], out[1])


def _eval_sample(name: str, n: int) -> list[str]:
    path = EVAL_DIR / f"{name}.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    rows = [json.loads(line)["prompt"] for line in path.read_text("utf-8").splitlines() if line.strip()]
    # NFKC as the prompt stage applies it before encoding.
    return [unicodedata.normalize("NFKC", p) for p in random.Random(0).sample(rows, min(n, len(rows)))]


@pytest.mark.parametrize("name", ["benign_coco10k", "nudity_sixcd", "benign_sixcd"])
def test_every_eval_prompt_matches_sentence_transformers(encoder, name):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(encoder.model_dir), device="cpu")
    model.max_seq_length = 128
    prompts = _eval_sample(name, 64)
    cosine = (encoder.encode(prompts, 128) * model.encode(prompts, normalize_embeddings=True)).sum(axis=1)
    assert cosine.min() >= MIN_COSINE, (prompts[int(cosine.argmin())], cosine.min())


def _long_texts() -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghij"
    # Words from 1 to 300 letters: past 100 a word is one [UNK], so a cut must not count on length.
    varied = " ".join("".join(rng.choice(letters) for _ in range(rng.choice([1, 3, 8, 99, 101, 300])))
                      for _ in range(1500))
    return ["我们是朋友" * 4000, ("x" * 150 + " ") * 400, "word " * 5000, ("café\u0301 naïve, Ⅻ ") * 3000,
            "a" * 50_000, "a" * 50_000 + " cat" * 300, varied]


@pytest.mark.parametrize("max_tokens", [8, 128, 512])
def test_long_texts_cut_before_tokenizing_keep_their_first_tokens(encoder, max_tokens):
    from tokenizers import Tokenizer

    whole = Tokenizer.from_file(str(encoder.model_dir / "tokenizer.json"))
    whole.no_padding()
    whole.enable_truncation(max_tokens)
    texts = _long_texts()
    assert encoder.tokenize(texts, max_tokens) == [enc.ids for enc in whole.encode_batch(texts)]


class _Recorder:
    """Stands in for the encoder's tokenizer and records the length of every text it is given."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.lengths = tokenizer, []

    def encode(self, text, **kwargs):
        self.lengths.append(len(text))
        return self.tokenizer.encode(text, **kwargs)

    def encode_batch(self, texts, **kwargs):
        self.lengths.extend(map(len, texts))
        return self.tokenizer.encode_batch(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_a_huge_prompt_is_not_tokenized_whole(encoder, monkeypatch):
    # Tokenized whole, 4 M characters took gigabytes of memory to keep 128 tokens.
    recorder = _Recorder(encoder._tokenizer)
    monkeypatch.setattr(encoder, "_tokenizer", recorder)
    huge = "我们是朋友" * 200_000
    (ids,) = encoder.tokenize([huge], 128)
    assert len(ids) == 128 and max(recorder.lengths) <= 128 * text_encoder._CHARS_PER_TOKEN
