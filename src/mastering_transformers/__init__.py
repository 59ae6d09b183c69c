"""Mastering Transformers: the course library, imported as ``mt``.

Each module is the one home of a concept that a chapter derives step by step.
"""

from .attention import (
    MultiHeadAttention,
    causal_mask,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
)
from .block import Block
from .data import CharVocab, build_corpus, get_batch, load_corpus, train_val_split
from .mlp import MLP, SwiGLU, gelu, swiglu_hidden_size
from .norms import LayerNorm, RMSNorm
from .positional import (
    LearnedPositionalEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_frequencies,
    sinusoidal_encoding,
)
from .rnn import LSTM, RNN, AdditiveAttention, LSTMCell, RNNCell, Seq2Seq
from .tracing import Trace, TraceRow, count_parameters, trace
from .utils import default_device, seed_everything
from .viz import plot_attention

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
    "Block",
    "CharVocab",
    "LSTM",
    "LSTMCell",
    "LayerNorm",
    "LearnedPositionalEmbedding",
    "MLP",
    "MultiHeadAttention",
    "RMSNorm",
    "RNN",
    "RNNCell",
    "Seq2Seq",
    "SwiGLU",
    "Trace",
    "TraceRow",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "build_corpus",
    "causal_mask",
    "count_parameters",
    "default_device",
    "gelu",
    "get_batch",
    "load_corpus",
    "merge_heads",
    "padding_mask",
    "plot_attention",
    "rope_frequencies",
    "scaled_dot_product_attention",
    "seed_everything",
    "sinusoidal_encoding",
    "split_heads",
    "swiglu_hidden_size",
    "trace",
    "train_val_split",
]
