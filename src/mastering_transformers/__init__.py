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
from . import distributed
from .flops import (
    PEAK_FLOPS,
    activation_elements,
    checkpoint_blocks,
    count_flops,
    expected_tokens_per_s,
    flops_per_token,
    matmul_params,
    mfu,
    saved_activation_bytes,
    tensor_bytes,
    training_memory,
)
from .generate import sample_next, top_k_filter, top_p_filter
from .finetune import (
    SPECIAL_TOKENS,
    LoRALinear,
    SFTExample,
    SFTTokenizer,
    add_special_tokens,
    apply_lora,
    choice_accuracy,
    instruction_dataset,
    mask_prompt_targets,
    merge_lora,
    sft_accuracy,
    sft_train,
)
from .flash import TensorMemory, flash_attention, online_softmax, tiled_attention_backward, tiled_attention_forward
from .gpt import GPT, GPTConfig
from .inference import (
    Int8Linear,
    KVCache,
    LayerKVCache,
    dequantize_int8,
    forward_with_cache,
    generate_batch,
    generate_cached,
    kv_cache_bytes,
    model_bytes,
    pad_left,
    position_mask,
    quantize_int8,
    quantize_linears,
    residual_distribution,
    speculative_accept,
    speculative_generate,
    to_grouped_query,
)
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
from .scaling import (
    CHINCHILLA,
    CHINCHILLA_REFIT,
    CHINCHILLA_TOKENS_PER_PARAM,
    PowerLawFit,
    attention_ffn_flops,
    chinchilla_budget,
    compute_optimal,
    fit_loss_surface,
    fit_power_law,
    loss_surface,
)
from .tokenizer import Tokenizer, bytes_to_unicode, pretokenize, train_bpe
from .tracing import Trace, TraceRow, count_parameters, trace
from .utils import default_device, seed_everything
from .interp import (
    ablate_heads,
    attention_backward,
    attention_maps,
    classify_heads,
    first_token_score,
    head_scores,
    induction_score,
    logit_lens,
    previous_token_score,
    repeated_random_tokens,
    residual_stream,
    token_losses,
    zero_head,
)
from .viz import bertviz_html, plot_attention, plot_heads, visible_tokens

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
    "SPECIAL_TOKENS",
    "LoRALinear",
    "SFTExample",
    "SFTTokenizer",
    "add_special_tokens",
    "apply_lora",
    "choice_accuracy",
    "instruction_dataset",
    "mask_prompt_targets",
    "merge_lora",
    "sft_accuracy",
    "sft_train",
    "CHINCHILLA",
    "CHINCHILLA_REFIT",
    "CHINCHILLA_TOKENS_PER_PARAM",
    "PowerLawFit",
    "attention_ffn_flops",
    "chinchilla_budget",
    "compute_optimal",
    "fit_loss_surface",
    "fit_power_law",
    "loss_surface",
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
__all__ += [  # chapter 13: FLOPs, MFU and memory; several processes (mt.distributed)
    "PEAK_FLOPS", "activation_elements", "checkpoint_blocks", "count_flops", "distributed", "expected_tokens_per_s",
    "flops_per_token", "matmul_params", "mfu", "saved_activation_bytes", "tensor_bytes", "training_memory",
]
__all__ += [  # chapter 15: looking inside a trained model
    "ablate_heads", "attention_backward", "attention_maps", "bertviz_html", "classify_heads", "first_token_score",
    "head_scores", "induction_score", "logit_lens", "plot_heads", "previous_token_score", "repeated_random_tokens",
    "residual_stream", "token_losses", "visible_tokens", "zero_head",
]
__all__ += ["TensorMemory", "flash_attention", "online_softmax", "tiled_attention_backward", "tiled_attention_forward"]
__all__ += [  # chapter 14: inference (KV cache, sliding window, batching, speculative decoding, int8)
    "Int8Linear", "KVCache", "LayerKVCache", "dequantize_int8", "forward_with_cache", "generate_batch",
    "generate_cached", "kv_cache_bytes", "model_bytes", "pad_left", "position_mask", "quantize_int8",
    "quantize_linears", "residual_distribution", "speculative_accept", "speculative_generate", "to_grouped_query",
]
