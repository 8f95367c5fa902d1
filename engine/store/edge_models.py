"""Translation of qdrant-client request models into Qdrant Edge objects.

The store logic we reuse from `langgraph-store-qdrant` speaks qdrant-client's models
(`models.Filter`, `models.QueryRequest`, ...). Qdrant Edge has its own, structurally
equivalent classes. Translating at this one seam lets the same plans run on a server
and in-process, with one payload layout for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import models

_DISTANCES = {
    models.Distance.COSINE: qe.Distance.Cosine,
    models.Distance.DOT: qe.Distance.Dot,
    models.Distance.EUCLID: qe.Distance.Euclid,
    models.Distance.MANHATTAN: qe.Distance.Manhattan,
}


def distance(value: models.Distance) -> qe.Distance:
    return _DISTANCES[value]


def filter_(flt: models.Filter | None) -> qe.Filter | None:
    if flt is None:
        return None
    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould(
            conditions=_conditions(flt.min_should.conditions),
            min_count=flt.min_should.min_count,
        )
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
        min_should=min_should,
    )


def _conditions(conditions: Sequence[Any] | Any | None) -> list[Any] | None:
    if conditions is None:
        return None
    if not isinstance(conditions, Sequence):
        conditions = [conditions]
    return [condition(c) for c in conditions]


def condition(cond: Any) -> Any:
    match cond:
        case models.Filter():
            return filter_(cond)
        case models.FieldCondition(match=None, range=None):
            raise NotImplementedError(f"Unsupported field condition: {cond!r}")
        case models.FieldCondition(match=None):
            return qe.FieldCondition(key=cond.key, range=_range(cond.range))
        case models.FieldCondition():
            return qe.FieldCondition(key=cond.key, match=_match(cond.match))
        case models.IsEmptyCondition():
            return qe.IsEmptyCondition(cond.is_empty.key)
        case models.IsNullCondition():
            return qe.IsNullCondition(cond.is_null.key)
        case models.HasIdCondition():
            return qe.HasIdCondition({str(pid) for pid in cond.has_id})
    raise NotImplementedError(f"Unsupported filter condition: {type(cond).__name__}")


def _match(match: Any) -> Any:
    match match:
        case models.MatchValue(value=bool() as flag):
            # qdrant-edge reads `Union[str, int, bool]` trying int first, and a Python bool
            # is an int: `True` became the number 1, matching `1` and never a stored `true`.
            # NumPy's bool is no int to it and arrives as a boolean, which is what
            # qdrant-client sends a server (`{"value": true}`).
            return qe.MatchValue(np.bool_(flag))
        case models.MatchValue():
            return qe.MatchValue(match.value)
        case models.MatchAny():
            return qe.MatchAny(list(match.any))
        case models.MatchExcept():
            return qe.MatchExcept(list(match.except_))
    raise NotImplementedError(f"Unsupported match: {type(match).__name__}")


def _range(bounds: Any) -> Any:
    values = {name: getattr(bounds, name) for name in ("gt", "gte", "lt", "lte")}
    if any(isinstance(v, datetime) for v in values.values()):
        return qe.RangeDateTime(
            **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
        )
    return qe.RangeFloat(**{k: None if v is None else float(v) for k, v in values.items()})


def with_payload(value: bool | Sequence[str] | None) -> Any:
    if value is None or isinstance(value, bool):
        return bool(value)
    return list(value)


def search_params(params: models.SearchParams | None) -> qe.SearchParams | None:
    if params is None:
        return None
    return qe.SearchParams(hnsw_ef=params.hnsw_ef, exact=bool(params.exact))


def query_request(request: models.QueryRequest) -> qe.QueryRequest:
    return qe.QueryRequest(
        limit=request.limit,
        offset=request.offset,
        query=_scoring_query(request.query, request.using),
        prefetches=[_prefetch(p) for p in _as_list(request.prefetch)] or None,
        filter=filter_(request.filter),
        params=search_params(request.params),
        with_payload=with_payload(request.with_payload),
        with_vector=False,
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _prefetch(prefetch: models.Prefetch) -> qe.Prefetch:
    return qe.Prefetch(
        limit=prefetch.limit or 10,
        query=_scoring_query(prefetch.query, prefetch.using),
        prefetches=[_prefetch(p) for p in _as_list(prefetch.prefetch)] or None,
        params=search_params(prefetch.params),
        filter=filter_(prefetch.filter),
        score_threshold=prefetch.score_threshold,
    )


def _scoring_query(query: Any, using: str | None) -> Any:
    match query:
        case None:
            return None
        case models.OrderByQuery(order_by=models.OrderBy() as order):
            direction = (
                qe.Direction.Desc if order.direction == models.Direction.DESC else qe.Direction.Asc
            )
            return qe.OrderBy(key=order.key, direction=direction)
        case list() as vector:
            return qe.Query.Nearest(vector, using=using)
        case models.SparseVector():
            return qe.Query.Nearest(sparse(query), using=using)
        case models.TextQuery(text=models.TextQueryInput() as text):
            # `using` names the payload field whose text index scores the points.
            return qe.TextQuery(str(using), text.query)
        case models.FormulaQuery():
            return qe.Formula(_expression(query.formula), defaults=query.defaults)
        case models.FusionQuery(fusion=models.Fusion.RRF):
            return qe.Fusion.Rrf(k=60)
    raise NotImplementedError(f"Unsupported query: {query!r}")


_DECAYS = {
    "exp_decay": qe.DecayKind.Exp,
    "lin_decay": qe.DecayKind.Lin,
    "gauss_decay": qe.DecayKind.Gauss,
}


def _expression(expr: Any) -> qe.Expression:
    """A formula expression tree, for the node kinds the hybrid search uses."""
    E = qe.Expression
    match expr:
        case bool():
            raise NotImplementedError("Unsupported expression: bool")
        case int() | float():
            return E.Constant(float(expr))
        case str():
            return E.Variable(expr)
        case models.SumExpression():
            return E.Sum([_expression(e) for e in expr.sum])
        case models.MultExpression():
            return E.Mult([_expression(e) for e in expr.mult])
        case models.DivExpression():
            return E.Div(
                _expression(expr.div.left),
                _expression(expr.div.right),
                by_zero_default=expr.div.by_zero_default,
            )
        case models.FieldCondition() | models.Filter():
            return E.Condition(condition(expr))  # 1 where it holds, else 0
        case models.DatetimeExpression():
            return E.Datetime(expr.datetime)
        case models.DatetimeKeyExpression():
            return E.DatetimeKey(expr.datetime_key)
        case models.ExpDecayExpression(exp_decay=params):
            return _decay("exp_decay", params)
        case models.LinDecayExpression(lin_decay=params):
            return _decay("lin_decay", params)
        case models.GaussDecayExpression(gauss_decay=params):
            return _decay("gauss_decay", params)
    raise NotImplementedError(f"Unsupported expression: {type(expr).__name__}")


def _decay(name: str, params: models.DecayParamsExpression) -> qe.Expression:
    return qe.Expression.Decay(
        _DECAYS[name],
        _expression(params.x),
        target=None if params.target is None else _expression(params.target),
        midpoint=params.midpoint,
        scale=params.scale,
    )


def point(p: models.PointStruct) -> qe.Point:
    vectors = p.vector or {}
    if isinstance(vectors, dict):
        vectors = {
            name: sparse(v) if isinstance(v, models.SparseVector) else v
            for name, v in vectors.items()
        }
    return qe.Point(str(p.id), vectors, p.payload)


def sparse(vector: models.SparseVector) -> qe.SparseVector:
    return qe.SparseVector(list(vector.indices), list(vector.values))


def payload_index(schema: Any) -> Any:
    """Index parameters; Edge needs `range` spelled out where the server defaults it."""
    match schema:
        case models.KeywordIndexParams():
            return qe.KeywordIndexParams(
                is_tenant=schema.is_tenant, on_disk=schema.on_disk, enable_hnsw=schema.enable_hnsw
            )
        case models.IntegerIndexParams():
            return qe.IntegerIndexParams(
                lookup=schema.lookup,
                range=True if schema.range is None else schema.range,
                on_disk=schema.on_disk,
                enable_hnsw=schema.enable_hnsw,
            )
        case models.DatetimeIndexParams():
            return qe.DatetimeIndexParams(on_disk=schema.on_disk, enable_hnsw=schema.enable_hnsw)
        case models.TextIndexParams():
            return _text_index(schema)
    raise NotImplementedError(f"Unsupported payload index: {schema!r}")


_TOKENIZERS = {
    models.TokenizerType.WORD: qe.TokenizerType.Word,
    models.TokenizerType.WHITESPACE: qe.TokenizerType.Whitespace,
    models.TokenizerType.PREFIX: qe.TokenizerType.Prefix,
    models.TokenizerType.MULTILINGUAL: qe.TokenizerType.Multilingual,
}


def _text_index(schema: models.TextIndexParams) -> qe.TextIndexParams:
    """The subset of text-index options the hybrid search may set (English only)."""
    english = models.Language.ENGLISH
    return qe.TextIndexParams(
        tokenizer=_TOKENIZERS[schema.tokenizer] if schema.tokenizer else None,
        lowercase=schema.lowercase,
        stopwords=qe.Language.English if schema.stopwords == english else None,
        stemmer=qe.SnowballParams(qe.SnowballLanguage.English) if schema.stemmer else None,
        scoring=qe.TextScoringParams() if schema.scoring else None,
    )
