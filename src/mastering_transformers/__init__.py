"""Mastering Transformers: the course library, imported as ``mt``.

Each module is the one home of a concept that a chapter derives step by step.
"""

from .attention import causal_mask, padding_mask, scaled_dot_product_attention
from .data import CharVocab, build_corpus, get_batch, load_corpus, train_val_split
from .rnn import LSTM, RNN, AdditiveAttention, LSTMCell, RNNCell, Seq2Seq
from .utils import default_device, seed_everything
from .viz import plot_attention

__version__ = "0.1.0"

__all__ = [
    "AdditiveAttention",
    "CharVocab",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "Seq2Seq",
    "build_corpus",
    "causal_mask",
    "default_device",
    "get_batch",
    "load_corpus",
    "padding_mask",
    "plot_attention",
    "scaled_dot_product_attention",
    "seed_everything",
    "train_val_split",
]
