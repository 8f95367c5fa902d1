"""Test doubles for services the bot talks to over the network (no real vendor is reachable)."""
