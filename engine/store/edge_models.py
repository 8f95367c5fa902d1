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
    query: Any
    match request.query:
        case models.OrderByQuery(order_by=models.OrderBy() as order):
            direction = (
                qe.Direction.Desc if order.direction == models.Direction.DESC else qe.Direction.Asc
            )
            query = qe.OrderBy(key=order.key, direction=direction)
        case list() as vector:
            query = qe.Query.Nearest(vector, using=request.using)
        case _:
            raise NotImplementedError(f"Unsupported query: {request.query!r}")
    return qe.QueryRequest(
        limit=request.limit,
        offset=request.offset,
        query=query,
        filter=filter_(request.filter),
        params=search_params(request.params),
        with_payload=with_payload(request.with_payload),
        with_vector=False,
    )


def point(p: models.PointStruct) -> qe.Point:
    return qe.Point(str(p.id), p.vector or {}, p.payload)


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
    raise NotImplementedError(f"Unsupported payload index: {schema!r}")
