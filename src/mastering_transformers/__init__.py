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
from .generate import sample_next, top_k_filter, top_p_filter
from .gpt import GPT, GPTConfig
from .encoder_decoder import (
    AttentionPool,
    DecoderBlock,
    EncoderClassifier,
    EncoderDecoder,
    TokenPositionEmbedding,
    TransformerEncoder,
    mean_pool,
    reversal_batch,
)
from .mlp import MLP, SwiGLU, gelu, swiglu_hidden_size
from .norms import LayerNorm, RMSNorm
from .optim import AdamW, clip_grad_norm, lr_at
from .positional import (
    LearnedPositionalEmbedding,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_frequencies,
    sinusoidal_encoding,
)
from .rnn import LSTM, RNN, AdditiveAttention, LSTMCell, RNNCell, Seq2Seq
from .tokenizer import Tokenizer, bytes_to_unicode, pretokenize, train_bpe
from .tracing import Trace, TraceRow, count_parameters, trace
from .utils import default_device, seed_everything
from .viz import plot_attention

__version__ = "0.1.0"

# The training loop and its command line (chapter 11) live in mt.train, imported on first use: running
# `python -m mastering_transformers.train` would otherwise import that module twice (runpy warns about it).
_TRAIN_NAMES = (
    "ConfigError", "PRESETS", "TrainConfig", "TrainResult", "accumulate_gradients", "autocast_context",
    "course_checkpoint", "cross_entropy", "evaluate_loss", "generate_text", "load_checkpoint", "make_config", "pick_device",
    "plot_log", "read_log_csv", "save_checkpoint", "train_gpt",
)


def __getattr__(name):
    if name == "train" or name in _TRAIN_NAMES:
        import importlib

        train = importlib.import_module(".train", __name__)
        return train if name == "train" else getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdditiveAttention",
    "AttentionPool",
    "Block",
    "CharVocab",
    "GPT",
    "GPTConfig",
    "DecoderBlock",
    "EncoderClassifier",
    "EncoderDecoder",
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
    "TokenPositionEmbedding",
    "Tokenizer",
    "Trace",
    "TraceRow",
    "TransformerEncoder",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "build_corpus",
    "bytes_to_unicode",
    "causal_mask",
    "count_parameters",
    "default_device",
    "gelu",
    "get_batch",
    "load_corpus",
    "mean_pool",
    "merge_heads",
    "padding_mask",
    "plot_attention",
    "pretokenize",
    "reversal_batch",
    "rope_frequencies",
    "sample_next",
    "scaled_dot_product_attention",
    "seed_everything",
    "sinusoidal_encoding",
    "split_heads",
    "swiglu_hidden_size",
    "top_k_filter",
    "top_p_filter",
    "trace",
    "train_bpe",
    "train_val_split",
]

__all__ += ["AdamW", "clip_grad_norm", "lr_at", *_TRAIN_NAMES]
