"""Byte-level BPE tokenization, the scheme of GPT-2 (chapter 9 derives it).

A model reads integers, so text must be cut into pieces from a fixed vocabulary. Byte-level BPE starts from the
256 possible bytes of UTF-8 text (nothing is ever unknown) and learns *merges*: it repeatedly replaces the most
frequent adjacent pair of tokens in the training text by a new token. The pipeline is

    text -> split on special tokens -> pre-tokens (GPT-2's regex) -> UTF-8 bytes -> merges, in the learned order

``train_bpe`` learns the vocabulary and the merges; ``Tokenizer`` encodes and decodes with them, streams a file
(``encode_iterable``), and reads and writes GPT-2's ``vocab.json`` / ``merges.txt`` files.

Conventions (each one is a choice; chapter 9 explains why):

- Ids 0..255 are the single bytes (id ``b`` is ``bytes([b])``), then the special tokens in the order given,
  then one id per merge, in the order the merges were learned.
- Merges never cross pre-token boundaries, and special tokens are cut out of the text before anything else,
  so they are never split and never merged.
- Ties between equally frequent pairs go to the lexicographically greater pair of bytes,
  ``max(count, (left_bytes, right_bytes))``: the rule is arbitrary but fixed, so training is deterministic.
- Of two special tokens that match at the same place (``"<|end|>"`` and ``"<|end|><|end|>"``), the longer wins.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import regex

# GPT-2's pre-tokeniser (Radford et al., 2019): English contractions, runs of letters or of digits with at most
# one leading space, runs of other symbols, and whitespace (a run of spaces gives its last one to the next word).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKEN = regex.compile(GPT2_PATTERN)
_CACHE_LIMIT = 1 << 16  # pre-tokens remembered by a Tokenizer; the cache is emptied when it is full


# ---------------------------------------------------------------------------------------------------
# Pre-tokenisation and special tokens
# ---------------------------------------------------------------------------------------------------


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(
            f"text must be a str; got {type(text).__name__} (decode bytes first, e.g. data.decode('utf-8'))"
        )


def _check_special_tokens(special_tokens) -> list[str]:
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of strings, not one string; got {special_tokens!r}")
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"every special token must be a non-empty str; got {s!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special tokens must be distinct; got {specials!r}")
    return specials


def _special_splitter(specials: list[str]) -> regex.Pattern | None:
    """A pattern that finds special tokens; longest first, so the longer of two overlapping ones wins."""
    if not specials:
        return None
    return regex.compile("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)))


def _split_special(text: str, splitter: regex.Pattern | None) -> Iterator[tuple[str, bool]]:
    """Yield ``(piece, is_special)``: the text cut at every special token, which comes out whole."""
    start = 0
    if splitter is not None:
        for m in splitter.finditer(text):
            if m.start() > start:
                yield text[start:m.start()], False
            yield m.group(), True
            start = m.end()
    if start < len(text):
        yield text[start:], False


def pretokenize(text: str, special_tokens: list[str] | None = None) -> list[str]:
    """The pieces BPE works inside: GPT-2's regex applied between special tokens, which stay whole.

    ``"".join(pretokenize(text, specials)) == text`` for every text.
    """
    _check_text(text)
    splitter = _special_splitter(_check_special_tokens(special_tokens))
    pieces: list[str] = []
    for piece, is_special in _split_special(text, splitter):
        pieces.extend([piece] if is_special else _PRETOKEN.findall(piece))
    return pieces


# ---------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right, by ``new_id``."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _pop_best_pair(heap: list, pair_counts: dict, vocab: dict[int, bytes]) -> tuple[int, int] | None:
    """The most frequent pair; of equally frequent ones, the lexicographically greatest (bytes, bytes).

    The heap holds ``(-count, pair)`` entries, some stale (the count changed since): those are dropped here.
    """
    while heap:
        neg_count, pair = heapq.heappop(heap)
        if pair_counts.get(pair) == -neg_count:
            break
    else:
        return None
    ties = {pair}
    while heap and heap[0][0] == neg_count:
        _, other = heapq.heappop(heap)
        if pair_counts.get(other) == -neg_count:
            ties.add(other)
    best = max(ties, key=lambda p: (vocab[p[0]], vocab[p[1]]))
    for other in ties - {best}:  # the others stay candidates for the next merges
        heapq.heappush(heap, (neg_count, other))
    return best


def train_bpe(
    text: str, vocab_size: int, special_tokens: list[str] | None = None
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Learn a byte-level BPE vocabulary of ``vocab_size`` tokens from ``text``.

    Returns ``(vocab, merges)``: ``vocab`` maps id -> the token's bytes (256 bytes, then ``special_tokens``,
    then one token per merge), ``merges`` lists the merged pairs ``(left, right)`` in the order learned.
    Training stops early, with a smaller vocabulary, if every pre-token has become a single token.

    Each distinct pre-token is counted once and stored with its count, so a word that occurs 10,000 times is
    merged once. Pair counts are updated incrementally: a merge touches only the words that contain the pair
    (an index pair -> words), and a heap finds the most frequent pair without scanning all of them.
    """
    _check_text(text)
    specials = _check_special_tokens(special_tokens)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int; got {type(vocab_size).__name__}")
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size must be at least 256 (one token per byte) + {len(specials)} special tokens "
            f"= {256 + len(specials)}; got {vocab_size}"
        )

    vocab = {i: bytes([i]) for i in range(256)}
    for s in specials:
        vocab[len(vocab)] = s.encode("utf-8")

    # 1. Distinct pre-tokens with their counts; special tokens are cut out first, so nothing merges across them.
    word_counts: Counter[str] = Counter()
    for piece, is_special in _split_special(text, _special_splitter(specials)):
        if not is_special:
            word_counts.update(_PRETOKEN.findall(piece))
    words = [list(w.encode("utf-8")) for w in word_counts]  # each word as a list of token ids
    freqs = list(word_counts.values())

    # 2. How often each adjacent pair occurs, and in which words.
    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (ids, freq) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += freq
            where[pair].add(w)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)

    # 3. Merge the best pair, then update the counts of the words that contained it, and only those.
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pair = _pop_best_pair(heap, pair_counts, vocab)
        if pair is None:
            break
        new_id = len(vocab)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((vocab[pair[0]], vocab[pair[1]]))
        before: dict[tuple[int, int], int] = {}  # the counts this merge changes, as they were before it
        for w in where.pop(pair):
            old, freq = words[w], freqs[w]
            new = words[w] = _merge(old, pair, new_id)
            old_pairs, new_pairs = list(zip(old, old[1:])), list(zip(new, new[1:]))
            for p in old_pairs:
                before.setdefault(p, pair_counts[p])
                pair_counts[p] -= freq
            for p in new_pairs:
                before.setdefault(p, pair_counts[p])
                pair_counts[p] += freq
            old_set, new_set = set(old_pairs), set(new_pairs)
            for p in old_set - new_set - {pair}:
                where[p].discard(w)
            for p in new_set - old_set:
                where[p].add(w)
        for p, count in before.items():  # one fresh heap entry per changed count; the old entries go stale
            now = pair_counts[p]
            if now == 0:
                del pair_counts[p]
                where.pop(p, None)
            elif now != count:
                heapq.heappush(heap, (-now, p))
    return vocab, merges


# ---------------------------------------------------------------------------------------------------
# GPT-2's file format: bytes shown as printable characters
# ---------------------------------------------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character, so that a token is a visible string in vocab.json.

    Printable Latin-1 bytes stand for themselves; the others (control characters, the space, ...) are moved, in
    order, to the characters 256, 257, ...: the space becomes "Ġ" (U+0120) and the newline "Ċ" (U+010A).
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in keep}
    moved = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + moved)
            moved += 1
    return dict(sorted(mapping.items()))


# ---------------------------------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------------------------------


class Tokenizer:
    """Encode text to token ids and back with a byte-level BPE vocabulary and its merges.

    ``vocab`` maps id -> bytes and must contain the 256 single bytes; ``merges`` lists ``(left, right)`` pairs in
    the order they were learned (both halves and their concatenation must be in ``vocab``). A special token that
    is not in ``vocab`` yet is added with the next free id.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ):
        self.vocab = {}
        for i, b in vocab.items():
            if isinstance(i, bool) or not isinstance(i, int) or i < 0 or not isinstance(b, bytes):
                raise ValueError(f"vocab must map non-negative int ids to bytes; got {i!r}: {b!r}")
            self.vocab[i] = b
        self.special_tokens = _check_special_tokens(special_tokens)
        highest_id = {b: i for i, b in sorted(self.vocab.items())}  # special tokens come after the bytes
        self._special_ids = {}
        for s in self.special_tokens:
            i = highest_id.get(s.encode("utf-8"))
            if i is None:
                i = max(self.vocab, default=-1) + 1
                self.vocab[i] = s.encode("utf-8")
            self._special_ids[s] = i
        special_ids = set(self._special_ids.values())
        self._id_of = {b: i for i, b in sorted(self.vocab.items(), reverse=True) if i not in special_ids}
        missing = [x for x in range(256) if bytes([x]) not in self._id_of]
        if missing:
            raise ValueError(f"vocab must contain every single byte, so that any text can be encoded; "
                             f"{len(missing)} missing, e.g. {bytes([missing[0]])!r}")
        self._byte_ids = [self._id_of[bytes([x])] for x in range(256)]

        self.merges = []
        self._ranks: dict[tuple[int, int], tuple[int, int]] = {}  # (left id, right id) -> (rank, merged id)
        for rank, (a, b) in enumerate(merges):
            unknown = [t for t in (a, b, a + b) if t not in self._id_of]
            if unknown:
                raise ValueError(f"merge {rank} {(a, b)!r} needs {unknown[0]!r}, which is not in the vocabulary")
            self.merges.append((a, b))
            self._ranks.setdefault((self._id_of[a], self._id_of[b]), (rank, self._id_of[a + b]))
        self._splitter = _special_splitter(self.special_tokens)
        self._longest_special = max(map(len, self.special_tokens), default=0)
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens!r})")

    # --- encoding -----------------------------------------------------------------------------------

    def _encode_pretoken(self, word: str) -> list[int]:
        """One pre-token -> ids: start from its bytes, apply the earliest-learned merge present until none is."""
        ids = self._cache.get(word)
        if ids is not None:
            return ids
        ids = [self._byte_ids[x] for x in word.encode("utf-8")]
        while len(ids) > 1:
            pairs = [p for p in zip(ids, ids[1:]) if p in self._ranks]
            if not pairs:
                break
            first = min(pairs, key=self._ranks.__getitem__)  # the pair merged earliest in training
            ids = _merge(ids, first, self._ranks[first][1])
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> token ids. Special tokens in the text become their single id."""
        _check_text(text)
        ids: list[int] = []
        for piece, is_special in _split_special(text, self._splitter):
            if is_special:
                ids.append(self._special_ids[piece])
            else:
                for word in _PRETOKEN.findall(piece):
                    ids.extend(self._encode_pretoken(word))
        return ids

    def _encode_stable_prefix(self, text: str) -> tuple[list[int], int]:
        """The ids of a prefix of ``text`` that no continuation of the text can change, and the prefix's length.

        A special token can still appear (or grow longer) only where it would reach past the end of ``text``,
        that is in its last L - 1 characters (L: the longest special token); call where they start ``limit``.
        A special token found before ``limit`` is final, and so is all the text before it. After the last of
        those, a pre-token is final once the two characters after it lie before ``limit``: what GPT-2's regex
        matches depends on at most the two characters after the match (``'r`` becomes ``'re`` if an ``e``
        follows; the whitespace rule ``\\s+(?!\\S)`` looks one past the run), so nothing later can change it.
        Those pre-tokens are encoded as found. Cutting the text after them and pre-tokenising the cut text again
        could change them: "\\n\\nC" gives "\\n", "\\n", but "\\n\\n" alone is one pre-token.
        """
        limit = len(text) - max(self._longest_special - 1, 0)
        ids: list[int] = []
        start = 0
        if self._splitter is not None:
            for m in self._splitter.finditer(text):
                if m.start() >= limit:
                    break
                ids += self.encode(text[start:m.start()])
                ids.append(self._special_ids[m.group()])
                start = m.end()
        cut = start
        for m in _PRETOKEN.finditer(text, start):
            if m.end() + 2 > limit:
                break
            ids += self._encode_pretoken(m.group())
            cut = m.end()
        return ids, cut

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Yield the ids of ``"".join(chunks)`` while reading ``chunks`` (e.g. the lines of an open file).

        Memory stays bounded by the longest pre-token: only a tail that the next chunk could still change is
        kept back. The ids are exactly those of ``encode`` on the whole text.
        """
        buffer = ""
        for chunk in chunks:
            _check_text(chunk)
            buffer += chunk
            ids, cut = self._encode_stable_prefix(buffer)
            yield from ids
            buffer = buffer[cut:]
        yield from self.encode(buffer)

    # --- decoding -----------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> text. Bytes that do not form valid UTF-8 (a character cut between two tokens) become
        U+FFFD, the replacement character "\ufffd", instead of raising."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        bad = [i for i in ids if i not in self.vocab]
        if bad:
            raise ValueError(f"token ids not in the vocabulary (size {self.vocab_size}): {bad[:5]}")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    # --- GPT-2 files ----------------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls, vocab_path: str | Path, merges_path: str | Path, special_tokens: list[str] | None = None
    ) -> "Tokenizer":
        """Load GPT-2-format files: ``vocab.json`` ({token string: id}) and ``merges.txt`` ("left right" lines).

        Token strings use ``bytes_to_unicode``'s characters; a special token is stored as its own text, so name
        the special tokens here.
        """
        specials = _check_special_tokens(special_tokens)
        decoder = {c: b for b, c in bytes_to_unicode().items()}

        def to_bytes(token: str, where: str) -> bytes:
            if token in specials:
                return token.encode("utf-8")
            try:
                return bytes(decoder[c] for c in token)
            except KeyError as err:
                raise ValueError(f"{where}: {token!r} has a character outside GPT-2's byte alphabet "
                                 f"({err.args[0]!r}); if it is a special token, pass it in special_tokens") from None

        with open(vocab_path, encoding="utf-8") as f:
            table = json.load(f)
        vocab = {int(i): to_bytes(token, str(vocab_path)) for token, i in table.items()}
        merges = []
        with open(merges_path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line or (n == 1 and line.startswith("#version")):
                    continue
                parts, where = line.split(" "), f"{merges_path}, line {n}"
                if len(parts) != 2:
                    raise ValueError(f"{where}: expected two tokens separated by one space; got {line!r}")
                merges.append((to_bytes(parts[0], where), to_bytes(parts[1], where)))
        return cls(vocab, merges, specials)

    def save(self, dir_or_prefix: str | Path) -> tuple[Path, Path]:
        """Write ``vocab.json`` and ``merges.txt`` in GPT-2's format and return their paths.

        An existing directory (or a path ending in "/") receives ``vocab.json`` and ``merges.txt``; anything else
        is a prefix: ``PREFIX-vocab.json`` and ``PREFIX-merges.txt``, as the ``tokenizers`` library names them.
        """
        target = Path(dir_or_prefix)
        if target.is_dir() or str(dir_or_prefix).endswith(("/", "\\")):
            target.mkdir(parents=True, exist_ok=True)
            vocab_path, merges_path = target / "vocab.json", target / "merges.txt"
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            vocab_path, merges_path = Path(f"{target}-vocab.json"), Path(f"{target}-merges.txt")
        encoder = bytes_to_unicode()
        specials = {i: s for s, i in self._special_ids.items()}
        table: dict[str, int] = {}
        for i, b in sorted(self.vocab.items()):
            token = specials[i] if i in specials else "".join(encoder[x] for x in b)
            if token in table:
                raise ValueError(f"ids {table[token]} and {i} are both written as {token!r}: the file would lose one")
            table[token] = i
        with open(vocab_path, "w", encoding="utf-8") as f:
            json.dump(table, f, ensure_ascii=False, indent=0)
        with open(merges_path, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write("".join(encoder[x] for x in a) + " " + "".join(encoder[x] for x in b) + "\n")
        return vocab_path, merges_path
