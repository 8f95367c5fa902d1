"""Thin platform adapters (console, Slack, Discord) on top of `engine`."""
