"""Long-term memory stores: `EdgeStore` (embedded Qdrant) and the server-mode factory."""

from engine.store.edge import EdgeStore

__all__ = ["EdgeStore"]
