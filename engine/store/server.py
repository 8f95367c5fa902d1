"""The server-mode store: the Qdrant team's `AsyncQdrantStore` plus hybrid search.

Same plans, same payload layout as `EdgeStore`; the mixin turns scored searches into the
hybrid query (`engine.store.hybrid`), and `setup` adds the full-text index BM25 needs.
"""

from __future__ import annotations

from typing import Any

from langgraph.store.qdrant import AsyncQdrantStore

from engine.store.hybrid import HybridSearchMixin, hybrid_config, text_index, text_path


class HybridQdrantStore(HybridSearchMixin, AsyncQdrantStore):
    async def setup(self, **collection_options: Any) -> None:
        await super().setup(**collection_options)
        if (config := hybrid_config(self.index_config)) is not None:
            # Idempotent on the server: re-creating an identical index is a no-op.
            await self.client.create_payload_index(
                self.collection_name, text_path(config), text_index(), wait=True
            )
