"""Platform-free core of membot: store, workflow, memory, model providers, settings.

Nothing in this package imports `bots`; adapters depend on the engine, never the reverse.
"""
