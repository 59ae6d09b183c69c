"""APIs ps10_gpt does not allow: its functions build these (torch.topk and torch.sort are allowed)."""

FORBIDDEN = {
    "mastering_transformers": "it holds the answers",
    "torch.nn.functional.scaled_dot_product_attention": "write the attention of the block yourself",
    "torch.nn.functional.multi_head_attention_forward": "write the attention of the block yourself",
    "torch._native_multi_head_attention": "write the attention of the block yourself",
    "torch.nn.MultiheadAttention": "write the attention of the block yourself",
    "torch.nn.TransformerEncoderLayer": "write the block yourself",
    "torch.nn.TransformerDecoderLayer": "write the block yourself",
    "torch.nn.TransformerEncoder": "write the block yourself",
    "torch.nn.TransformerDecoder": "write the block yourself",
    "torch.nn.Transformer": "write the block yourself",
}
