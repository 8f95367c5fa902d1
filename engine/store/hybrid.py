"""Hybrid, recency-aware search for the Qdrant stores: one query, run by the engine.

Memories are what people said in their own words, and questions rarely share those words
("what do I do for a living?" / "I'm an electrician"), so the dense vector leads. But
names, places and rare words are where dense vectors blur ("Braga" is near "Porto"), and
BM25 catches them. And when a fact changed, the newest statement must rank first; cosine
alone cannot know which of "I live in Lisbon" / "we're living in Braga now" is current.

So a search with a query becomes one Qdrant query-API request, the same on the embedded
engine (Qdrant Edge) and on a Qdrant server:

- prefetch 1: dense nearest neighbours of the query vector (the store's usual vector);
- prefetch 2: BM25 of the query's content words (stop words dropped: they only add
  noise), as a sparse vector named `bm25` that the engine weighs by each word's IDF
  (Qdrant's IDF modifier). Its term weights are made here (`lexical_document`,
  `lexical_query`: lowercased words as Qdrant's word tokenizer splits them, no stemming),
  so one query ranks alike on Qdrant Edge, a Qdrant server and qdrant-client's in-process
  mode. A sparse search applies the person's filter first and scores only their points,
  so its cost does not grow with everyone else's memories. The full-text index that
  stores made before rank words on (`TextQuery`) walks every point holding a query word
  instead: 0.8 ms at 10k memories, 17 ms at 100k, for a word most people use. Such a
  store keeps working on it until `membot reindex` rebuilds it. (Qdrant's own
  `qdrant_edge.Bm25` stems: "name" then finds "named it Noodle" and "teaching" the old
  "I teach at…", and it lost three questions on bench/memory_quality.py; these weights
  rank exactly as the text index did);
- a `FormulaQuery` that scores each candidate as
  `(dense + lexical_weight * bm25 / (bm25 + 1)) * (1 + recency_weight * decay) + boosts`,
  the decay halving every `half_life_days` before "now", each boost a constant added
  where a value field holds a given value.

A formula rather than RRF fusion: RRF keeps only ranks, and the caller needs a score that
means something ("is anything here relevant at all?"); the saturated BM25 term and the
bounded recency term only reorder candidates that are close in meaning.

Enabled by an index option, so any LangGraph program gets it through plain
`store.search(namespace, query=...)`:

    EdgeStore.open(path, index={"dims": 384, "embed": emb, "fields": ["text"],
                                "hybrid": {"text_field": "text", "time_field": "valid_from"}})
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict, cast

from langgraph.store.base import SearchOp
from langgraph.store.qdrant._plans import Plan
from langgraph.store.qdrant.base import VECTOR_NAME, QdrantIndexConfig
from qdrant_client import models

DAY_SECONDS = 86_400.0
LEXICAL_VECTOR = "bm25"
# How a store ranks words: a sparse BM25 vector per point (stores made since), or the
# full-text payload index of the text field (stores made before; see the module doc).
Lexical = Literal["sparse", "text"]
# Words in a typical chat message, for BM25's length normalisation.
_AVG_MESSAGE_TOKENS = 16.0


class HybridConfig(TypedDict, total=False):
    text_field: str
    """Value field ranked by BM25 (default "text"); it gets a full-text payload index."""
    time_field: str
    """Value field with an ISO-8601 time the recency decay reads (default "updated_at"
    of the item when absent from the config)."""
    half_life_days: float
    """The recency bonus halves every this many days (default 30)."""
    lexical_weight: float
    """Weight of the saturated BM25 score, in [0, 1) (default 0.3)."""
    recency_weight: float
    """How much more a statement made now weighs than one made long ago: relevance is
    multiplied by `1 + recency_weight * decay` (default 0.1)."""
    candidates: int
    """How many candidates each prefetch brings (default 50)."""
    boosts: list[Boost]
    """Score added to items whose value field equals a value (e.g. what kind of memory
    it is); evaluated by the engine as formula conditions."""
    indexed_fields: list[str]
    """Value fields that searches filter on (e.g. `{"recall": {"$ne": "never"}}`). Each
    gets a keyword payload index, as does every boost's field, so the engine reads an
    index instead of each candidate's payload: at 100k memories (100 a person) a recall
    search with one such filter and two boosts took 6.8 ms without, 1.1 ms with."""


class Boost(TypedDict):
    field: str
    value: str
    weight: float


DEFAULTS: HybridConfig = {
    "text_field": "text",
    "half_life_days": 30.0,
    "lexical_weight": 0.3,
    "recency_weight": 0.1,
    "candidates": 50,
}


def hybrid_config(index: QdrantIndexConfig | None) -> HybridConfig | None:
    """The index's hybrid options merged over the defaults, or None when it has none."""
    options = cast(dict[str, Any], index or {}).get("hybrid")
    if not options:
        return None
    return cast(HybridConfig, {**DEFAULTS, **(options if isinstance(options, dict) else {})})


def text_path(config: HybridConfig) -> str:
    return f"value.{config['text_field']}"


def time_path(config: HybridConfig) -> str:
    field = config.get("time_field")
    return f"value.{field}" if field else "updated_at"


def text_index() -> models.TextIndexParams:
    """The full-text index BM25 runs on (default tokenization, with scoring)."""
    return models.TextIndexParams(type=models.TextIndexType.TEXT, scoring=True)


def keyword_indexes(config: HybridConfig) -> dict[str, models.KeywordIndexParams]:
    """The keyword payload indexes a store with `config` keeps (see `indexed_fields`)."""
    fields = [*config.get("indexed_fields", []), *(b["field"] for b in config.get("boosts") or [])]
    schema = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, enable_hnsw=False)
    return {f"value.{field}": schema for field in dict.fromkeys(fields)}


def sparse_vectors_config() -> dict[str, models.SparseVectorParams]:
    """The sparse vector a hybrid store keeps beside its dense one (IDF by the engine)."""
    return {LEXICAL_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}


# BM25's term-frequency saturation and length normalisation (the usual k1 and b).
_BM25_K = 1.2
_BM25_B = 0.75
# Qdrant's "word" tokenizer, lowercased: runs of letters and digits.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _term_id(word: str) -> int:
    """A stable 32-bit id per word (sparse vector indices are u32)."""
    return int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")


def lexical_document(text: str) -> models.SparseVector | None:
    """A stored text's BM25 term weights (None when it has no word); the engine multiplies
    in each word's IDF at search time."""
    words = _words(text)
    if not words:
        return None
    norm = _BM25_K * (1 - _BM25_B + _BM25_B * len(words) / _AVG_MESSAGE_TOKENS)
    counts = Counter(_term_id(w) for w in words)
    weights = {i: tf * (_BM25_K + 1) / (tf + norm) for i, tf in counts.items()}
    return models.SparseVector(indices=list(weights), values=list(weights.values()))


def lexical_query(query: str) -> models.SparseVector | None:
    """A question's content words as a BM25 query, each once (None when none is left)."""
    ids = list(dict.fromkeys(_term_id(w) for w in _words(lexical_terms(query))))
    return models.SparseVector(indices=ids, values=[1.0] * len(ids)) if ids else None


# Words that carry no meaning for BM25 here: left in the query they only make the engine
# score every point that has "I" or "do" (the slowest part of the query, and noise).
_STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does doing for from had has have "
    "he her hers him his how i i'm i've i'd i'll if in into is it it's its me my mine "
    "myself no not of on or our ours she so than that the their them then there these they "
    "this those to too up us was we were what when where which who whom why will with "
    "would you your yours again any anything about just remind tell know please am what's "
    "where's who's how's that's there's don't doesn't didn't isn't im ive".split()
)
_TERM = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
MAX_TERMS = 16


def lexical_terms(query: str) -> str:
    """The query's content words, for BM25 (stop words dropped, at most `MAX_TERMS`)."""
    terms = [w for w in _TERM.findall(query) if w.lower().replace("’", "'") not in _STOPWORDS]
    return " ".join(list(dict.fromkeys(terms))[:MAX_TERMS])


def hybrid_request(
    config: HybridConfig,
    query: str,
    vector: list[float],
    query_filter: models.Filter | None,
    *,
    limit: int,
    with_payload: bool | list[str],
    search_params: models.SearchParams | None = None,
    now: datetime | None = None,
    lexical: Lexical = "sparse",
) -> models.QueryRequest:
    """One query-API request: dense + BM25 prefetches, scored by the recency formula."""
    candidates = max(int(config["candidates"]), limit)
    # `model_construct`: the vector was checked by the store's plans already; validating
    # its 384 floats again against every member of the query union cost ~0.8 ms a search.
    dense = models.Prefetch.model_construct(
        query=[vector],
        using=VECTOR_NAME,
        filter=query_filter,
        limit=candidates,
        params=search_params,
    )
    prefetch = [dense]
    if lexical == "sparse":
        if (words := lexical_query(query)) is not None:
            prefetch.append(
                models.Prefetch(
                    query=words, using=LEXICAL_VECTOR, filter=query_filter, limit=candidates
                )
            )
    elif terms := lexical_terms(query):
        prefetch.append(
            models.Prefetch(
                query=models.TextQuery(text=models.TextQueryInput(query=terms)),
                using=text_path(config),
                filter=query_filter,
                limit=candidates,
            )
        )
    bm25 = "$score[1]"
    saturated = models.DivExpression(
        div=models.DivParams(left=bm25, right=models.SumExpression(sum=[bm25, 1.0]))
    )
    stamp = (now or datetime.now(UTC)).isoformat()
    recency = models.ExpDecayExpression(
        exp_decay=models.DecayParamsExpression(
            x=models.DatetimeKeyExpression(datetime_key=time_path(config)),
            target=models.DatetimeExpression(datetime=stamp),
            scale=float(config["half_life_days"]) * DAY_SECONDS,
            midpoint=0.5,
        )
    )
    boosts = [
        models.MultExpression(
            mult=[
                float(boost["weight"]),
                models.FieldCondition(
                    key=f"value.{boost['field']}", match=models.MatchValue(value=boost["value"])
                ),
            ]
        )
        for boost in config.get("boosts") or []
    ]
    relevance = models.SumExpression(
        sum=["$score[0]", models.MultExpression(mult=[float(config["lexical_weight"]), saturated])]
    )
    # Recency scales relevance instead of adding to it: a recent message that has nothing
    # to do with the question gains (almost) nothing, while of two statements on the same
    # subject the newer one wins.
    freshness = models.SumExpression(
        sum=[1.0, models.MultExpression(mult=[float(config["recency_weight"]), recency])]
    )
    formula = models.SumExpression(
        sum=[models.MultExpression(mult=[relevance, freshness]), *boosts]
    )
    return models.QueryRequest.model_construct(
        prefetch=prefetch,
        query=models.FormulaQuery(
            formula=formula,
            # An item without the time field (written before it existed, or by a program
            # that does not set it) counts as fresh: never ranked down for lacking a date.
            defaults={"$score[0]": 0.0, bm25: 0.0, time_path(config): stamp},
        ),
        filter=query_filter,
        limit=limit,
        with_payload=with_payload,
        with_vector=False,
    )


class HybridSearchMixin:
    """Turns the Qdrant store plans' scored searches into `hybrid_request`s when the
    index config has a "hybrid" entry, and gives every written point its BM25 sparse
    vector when the store keeps them (`lexical == "sparse"`, set by the store from its
    layout). Mixed in before `BaseQdrantStore`, whose plan steps `_search_request` and
    `_prepare_upserts_plan` it extends, for `EdgeStore` and for the server store alike."""

    index_config: QdrantIndexConfig | None
    lexical: Lexical = "sparse"

    def _search_request(
        self,
        op: SearchOp,
        query_filter: models.Filter | None,
        vector: list[float] | None,
        *,
        limit: int,
        with_payload: bool | list[str],
    ) -> models.QueryRequest:
        config = hybrid_config(self.index_config)
        if config is None or not op.query or vector is None:
            return super()._search_request(  # type: ignore[misc]
                op, query_filter, vector, limit=limit, with_payload=with_payload
            )
        params = cast(QdrantIndexConfig, self.index_config).get("search_params")
        return hybrid_request(
            config,
            op.query,
            vector,
            query_filter,
            limit=limit,
            with_payload=with_payload,
            search_params=params,
            lexical=self.lexical,
        )

    # langgraph-store-qdrant has no public hook for a second vector per point; its plan
    # steps are the seam it is built on (as `_search_request` above), and
    # tests/test_hybrid_search.py::test_every_point_written_keeps_its_bm25_vector fails if
    # this one stops being called.
    def _prepare_upserts_plan(
        self, plan: Any, now: datetime
    ) -> Plan[list[list[models.PointStruct]]]:
        batches: list[list[models.PointStruct]] = yield from super()._prepare_upserts_plan(  # type: ignore[misc]
            plan, now
        )
        if (config := self.words_config()) is not None:
            for point in (p for batch in batches for p in batch):
                with_words(point, config)
        return batches

    def words_config(self) -> HybridConfig | None:
        """The hybrid config when this store keeps BM25 sparse vectors, so that every point
        written to it needs them (here, and where `membot migrate` copies points in)."""
        config = hybrid_config(self.index_config)
        return config if config is not None and self.lexical == "sparse" else None


def with_words(point: models.PointStruct, config: HybridConfig) -> models.PointStruct:
    """`point` with the BM25 sparse vector of its text field added (in place), if it has
    one. Also used where points are copied between stores (`membot migrate`)."""
    value = (point.payload or {}).get("value")
    text = value.get(config["text_field"]) if isinstance(value, Mapping) else None
    if isinstance(text, str) and (words := lexical_document(text)) is not None:
        vectors = point.vector if isinstance(point.vector, dict) else {}
        point.vector = {**vectors, LEXICAL_VECTOR: words}
    return point
