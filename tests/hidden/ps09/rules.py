"""APIs ps09_tokenization does not allow: its functions build byte-level BPE."""

FORBIDDEN = {
    "mastering_transformers": "its train_bpe and Tokenizer are the answers",
    "tokenizers": "write BPE yourself",
    "transformers": "write BPE yourself",
    "sentencepiece": "write BPE yourself",
}
