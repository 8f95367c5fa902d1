"""Thin platform adapters (console, Slack, Discord) on top of `engine`."""

import os

# One BLAS thread for the local sentence model: a bot process needs a core free for the
# event loop that acknowledges Slack/Discord events, and with two BLAS threads on a
# 2-core machine a burst of embeddings starved it (Slack ack p99 roughly halved with
# one). Only a default: an operator's own setting wins. Set here, before NumPy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
