"""Hidden checks for ps09 `decode(ids, vocab)`, against the tokens' bytes joined here and decoded with Python's
UTF-8 codec (errors="replace", as `mt.Tokenizer.decode` does).

One property per check: tokens that hold whole characters (ASCII and multi-byte); a character split between
tokens; bytes that are not valid UTF-8, which become U+FFFD. In the last check every invalid piece is a token of
its own, so decoding token by token would pass it: only the split-character check asks for joining first.
"""

import random

from mastering_transformers.grading import check

BYTES = {i: bytes([i]) for i in range(256)}


def _reference(ids, vocab) -> str:
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def _vocab(pieces: list[bytes]) -> dict[int, bytes]:
    vocab = dict(BYTES)
    for i, piece in enumerate(pieces):
        vocab[256 + i] = piece
    return vocab


def _expect(decode, ids, vocab, hint: str) -> None:
    expected = _reference(ids, vocab)
    text = decode(list(ids), vocab)
    assert isinstance(text, str), f"decode must return a str; got {type(text).__name__}"
    tokens = [vocab[i] for i in ids]
    shown = repr(tokens) if len(repr(tokens)) <= 80 else repr(tokens)[:79] + "…]"
    assert text == expected, f"the tokens {shown} must decode to {expected!r}; got {text!r}. {hint}"


@check(points=1)
def test_whole_characters(decode):
    """decodes tokens of whole characters, ASCII and multi-byte"""
    rng = random.Random(9601)
    words = ["the", " cat", "é", " café", "€", "日本", "🙂", "naïve", "\n"]
    vocab = _vocab([w.encode() for w in words])
    hint = "Join the tokens' bytes and decode them as UTF-8."
    _expect(decode, [], vocab, hint)
    _expect(decode, [104, 105], vocab, hint)
    for _ in range(4):
        ids = [rng.choice(range(256, 256 + len(words))) for _ in range(rng.randint(3, 10))]
        ids += [rng.choice(range(97, 123)) for _ in range(2)]
        rng.shuffle(ids)
        _expect(decode, ids, vocab, hint)


@check(points=1)
def test_split_character(decode):
    """a character split between tokens decodes whole"""
    rng = random.Random(9602)
    hint = ("A character's bytes can be spread over several tokens: join the bytes of all tokens first, then "
            "decode once, not token by token.")
    for text in ["é", "café!", "10€", "日本語", "🙂 ok", "ein Bär 🐻"]:
        data = text.encode()
        inside = [i for i in range(1, len(data)) if 0x80 <= data[i] < 0xC0]  # cuts inside a character
        others = [i for i in range(1, len(data)) if i not in inside]
        cuts = {rng.choice(inside), *rng.sample(others, min(len(others), rng.randint(0, 2)))}
        pieces = [data[i:j] for i, j in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]
        vocab = _vocab(pieces)
        _expect(decode, list(range(256, 256 + len(pieces))), vocab, hint)


@check(points=1)
def test_invalid_bytes(decode):
    """bytes that are not valid UTF-8 become U+FFFD, without an error"""
    hint = ('Bytes that do not form valid UTF-8 must become "\\ufffd", never an error and never dropped: '
            "look at the errors argument of bytes.decode")
    vocab = _vocab([b"caf\xc3", "🙂".encode()[:2], b"ok", b"\xff", b"\x80\x80"])
    cases = [[256], [104, 105, 257], [258, 259, 258], [260, 104], [104, 0xE2], [0xC3]]
    for ids in cases:
        _expect(decode, ids, vocab, hint)
