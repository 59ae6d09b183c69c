"""APIs ps08_encoder_decoder does not allow: its functions build these (torch.softmax is allowed)."""

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "torch.nn.functional.scaled_dot_product_attention": "write the attention yourself",
    "torch.nn.functional.multi_head_attention_forward": "write the attention yourself",
    "torch._native_multi_head_attention": "write the attention yourself",
    "torch.nn.MultiheadAttention": "write the attention yourself",
    "torch.nn.TransformerEncoderLayer": "write the attention yourself",
    "torch.nn.TransformerDecoderLayer": "write the attention yourself",
    "torch.nn.TransformerEncoder": "write the attention yourself",
    "torch.nn.TransformerDecoder": "write the attention yourself",
    "torch.nn.Transformer": "write the attention yourself",
}
