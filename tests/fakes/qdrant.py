"""A local fake of the Qdrant REST API: just the collection setup, for tests that drive the
real `qdrant-client`.

Why it exists: in server mode membot creates its collection through langgraph-store-qdrant's
`AsyncQdrantStore.setup()`, which passes our collection options (shards, replication, write
consistency) on to `qdrant_client.AsyncQdrantClient.create_collection`. Whether they reach
the server is decided in those two libraries and on the wire, so mocking our own code would
prove nothing. qdrant-client's in-process `:memory:` mode drops these options (it has no
cluster), and no Qdrant server is reachable from tests. So this server speaks just enough of
Qdrant's REST API for the real client, pointed at it through `url`, to run `setup()`, and
records what it was sent.

What it serves (JSON bodies wrapped in Qdrant's `{"result", "status", "time"}` envelope,
except `GET /`, which is bare like the real one):

- `GET /`: server info. qdrant-client fetches it from a background thread of its own and
  warns unless the major versions match and the minors are at most one apart; the store
  refuses servers older than 1.16. The default `version` is the installed client's, which
  satisfies both.
- `GET /collections/{name}/exists`
- `PUT /collections/{name}`: create; the body is kept, and a second create is refused.
- `GET /collections/{name}`: a `CollectionInfo` echoing the create body (vectors config,
  metadata, cluster options, with a real server's defaults for options left out) and the
  payload indexes created so far.
- `PUT /collections/{name}/index`: create a payload index.

Anything else gets a Qdrant-shaped 404, so a new request from a library upgrade shows up as a
failure rather than passing unseen. The state lives as long as the fake, so reopening a store
finds the collection it created. Like `FakeLLM`, it serves from its own event loop in a
background thread. Usage::

    async with FakeQdrant() as fake:       # or `with FakeQdrant() as fake:`
        client = AsyncQdrantClient(url=fake.url)
        ...
        fake.created("membot_memories")    # bodies of the create requests for a collection
        fake.requests                      # everything received, in order (`Received`)
"""

from __future__ import annotations

import importlib.metadata
import itertools
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

# What a real server reports for cluster options a create request leaves out.
_CLUSTER_DEFAULTS = {"shard_number": 1, "replication_factor": 1, "write_consistency_factor": 1}


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it: body parsed (None if not JSON)."""

    method: str
    path: str
    body: Any


class FakeQdrant(ThreadedServer):
    """Qdrant's collection-setup endpoints on one 127.0.0.1 port; see the module docstring."""

    def __init__(self, version: str | None = None) -> None:
        super().__init__()
        self.version = version or importlib.metadata.version("qdrant-client")
        self.requests: list[Received] = []
        self.collections: dict[str, dict[str, Any]] = {}  # name -> create body
        self.payload_indexes: dict[str, dict[str, Any]] = {}  # name -> {field: schema}
        self._operation_ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, method: str, path: str) -> list[Received]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def created(self, name: str) -> list[dict[str, Any]]:
        """Bodies of every create request for collection `name`, refused ones included."""
        return [r.body for r in self.requests_to("PUT", f"/collections/{name}")]

    # -- lifecycle -------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/", self._root)
        app.router.add_get("/collections/{name}/exists", self._exists)
        app.router.add_put("/collections/{name}", self._create)
        app.router.add_get("/collections/{name}", self._get)
        app.router.add_put("/collections/{name}/index", self._create_index)
        return app

    # -- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(Received(request.method, request.path, await _json(request)))
        try:
            return await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):  # a route the fake lacks
            return _error(404, f"Not found: {request.method} {request.path} (not faked)")

    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"title": "qdrant - vector search engine", "version": self.version, "commit": None}
        )

    async def _exists(self, request: web.Request) -> web.Response:
        return _ok({"exists": request.match_info["name"] in self.collections})

    async def _create(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _json(request)
        if name in self.collections:
            return _error(409, f"Wrong input: Collection `{name}` already exists!")
        if not isinstance(body, dict):
            return _error(400, "Wrong input: the body must be a JSON object")
        self.collections[name] = body
        self.payload_indexes[name] = {}
        return _ok(True)

    async def _get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.collections:
            return _error(404, f"Not found: Collection `{name}` doesn't exist!")
        body = self.collections[name]
        params = {key: body.get(key) or default for key, default in _CLUSTER_DEFAULTS.items()}
        payload_schema = {
            field: {"data_type": schema["type"], "params": schema, "points": 0}
            for field, schema in self.payload_indexes[name].items()
        }
        return _ok(
            {
                "status": "green",
                "optimizer_status": "ok",
                "indexed_vectors_count": 0,
                "points_count": 0,
                "segments_count": 0,
                "config": {
                    "params": {"vectors": body.get("vectors"), **params, "on_disk_payload": True},
                    "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                    "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
                    "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                    "metadata": body.get("metadata"),
                },
                "payload_schema": payload_schema,
            }
        )

    async def _create_index(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await _json(request)
        if name not in self.collections:
            return _error(404, f"Not found: Collection `{name}` doesn't exist!")
        if not isinstance(body, dict) or "field_name" not in body:
            return _error(400, "Wrong input: field_name is required")
        schema = body.get("field_schema")
        # A bare type name ("keyword") is short for its params without options.
        self.payload_indexes[name][body["field_name"]] = (
            schema if isinstance(schema, dict) else {"type": schema}
        )
        return _ok({"operation_id": next(self._operation_ids), "status": "completed"})


async def _json(request: web.Request) -> Any:
    """The parsed body, or None if not JSON. aiohttp keeps the bytes, so this can run twice."""
    if not request.body_exists:
        return None
    try:
        return await request.json()
    except ValueError:
        return None


def _ok(result: Any) -> web.Response:
    return web.json_response({"result": result, "status": "ok", "time": 0.0})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": {"error": message}, "time": 0.0}, status=status)
