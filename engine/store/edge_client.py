"""A qdrant-client-shaped facade over one in-process Qdrant Edge shard.

`langgraph-store-qdrant` expresses its store logic as plans that yield
`Call(method, args, kwargs)` requests for a `QdrantClient`. This class answers the
handful of methods those plans use, so the very same logic runs on Qdrant Edge. The
collection name argument is accepted and ignored: a shard is one collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import qdrant_edge as qe
from qdrant_client import models

from engine.store import edge_models as convert


class QueryResponse(NamedTuple):
    points: list[qe.ScoredPoint]


class EdgeClient:
    """Executes qdrant-client calls on an `EdgeShard`. Thread-safe as the shard is."""

    def __init__(self, shard: qe.EdgeShard) -> None:
        self.shard = shard

    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[str],
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool = False,
    ) -> list[qe.Record]:
        # The stub documents both flags as optional; the binding requires them.
        return self.shard.retrieve(list(ids), convert.with_payload(with_payload), False)

    def query_batch_points(
        self, collection_name: str, requests: Sequence[models.QueryRequest]
    ) -> list[QueryResponse]:
        return [
            QueryResponse(self.shard.query(convert.query_request(request))) for request in requests
        ]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: models.Filter | None = None,
        limit: int = 10,
        offset: Any = None,
        with_payload: bool | Sequence[str] = True,
        with_vectors: bool = False,
    ) -> tuple[list[qe.Record], Any]:
        return self.shard.scroll(
            qe.ScrollRequest(
                offset=None if offset is None else str(offset),
                limit=limit,
                filter=convert.filter_(scroll_filter),
                with_payload=convert.with_payload(with_payload),
                with_vector=False,
            )
        )

    def facet(
        self,
        collection_name: str,
        key: str,
        facet_filter: models.Filter | None = None,
        limit: int = 10,
        exact: bool = False,
    ) -> qe.FacetResponse:
        return self.shard.facet(
            qe.FacetRequest(key=key, limit=limit, exact=exact, filter=convert.filter_(facet_filter))
        )

    def count(
        self,
        collection_name: str,
        count_filter: models.Filter | None = None,
        exact: bool = True,
    ) -> models.CountResult:
        count = self.shard.count(qe.CountRequest(exact=exact, filter=convert.filter_(count_filter)))
        return models.CountResult(count=count)

    def delete(
        self,
        collection_name: str,
        points_selector: models.PointIdsList | models.FilterSelector,
        wait: bool = True,
    ) -> None:
        match points_selector:
            case models.PointIdsList(points=ids):
                operation = qe.UpdateOperation.delete_points([str(pid) for pid in ids])
            case models.FilterSelector(filter=flt):
                operation = qe.UpdateOperation.delete_points_by_filter(convert.filter_(flt))
            case _:
                raise NotImplementedError(f"Unsupported selector: {points_selector!r}")
        self.shard.update(operation)

    def upsert(
        self, collection_name: str, points: Sequence[models.PointStruct], wait: bool = True
    ) -> None:
        self.shard.update(qe.UpdateOperation.upsert_points([convert.point(p) for p in points]))

    def batch_update_points(
        self,
        collection_name: str,
        update_operations: Sequence[models.SetPayloadOperation],
        wait: bool = True,
    ) -> None:
        for operation in update_operations:
            match operation:
                case models.SetPayloadOperation(set_payload=models.SetPayload(filter=flt)) if flt:
                    self.shard.update(
                        qe.UpdateOperation.set_payload_by_filter(
                            convert.filter_(flt), operation.set_payload.payload
                        )
                    )
                case _:
                    raise NotImplementedError(f"Unsupported update: {operation!r}")

    def create_payload_index(self, collection_name: str, field_name: str, schema: Any) -> None:
        self.shard.update(
            qe.UpdateOperation.create_field_index(field_name, convert.payload_index(schema))
        )
