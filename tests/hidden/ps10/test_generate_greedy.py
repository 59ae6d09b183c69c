"""Hidden checks for ps10 `generate_greedy(logits_fn, idx, max_new_tokens, block_size)`, against the greedy loop
written here. `logits_fn` is a toy causal language model built here (it runs on the trusted side: the student's
code calls it back): ids (B, t) -> logits (B, t, V), where position s depends on the tokens 0..s of the window and
on s itself, like a GPT with learned positions. Like such a GPT it refuses windows longer than `block_size`.

One property per check: the result's form (the prompt, then max_new_tokens ids), the arg max of the last
position's logits (with prompts short enough that no cropping is needed), and the window the model is fed once
the sequence is longer than block_size.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


class _ToyLM:
    """ids (B, t) -> logits (B, t, V), causal, position-aware; records every window it is given."""

    def __init__(self, seed: int, vocab: int, block_size: int, d: int = 8):
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.block_size = vocab, block_size
        self.emb = torch.randn(vocab, d, generator=g, dtype=torch.float64)
        self.pos = torch.randn(block_size, d, generator=g, dtype=torch.float64)
        self.out = torch.randn(d, vocab, generator=g, dtype=torch.float64)
        self.windows: list[torch.Tensor] = []

    def __call__(self, idx):
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype.is_floating_point:
            raise ValueError(f"the model takes integer ids of shape (B, t); got {getattr(idx, 'shape', idx)}")
        t = idx.shape[1]
        if not 1 <= t <= self.block_size:
            raise ValueError(f"the model got a window of {t} tokens; it has positions for 1 to block_size="
                             f"{self.block_size} tokens only: feed it the last block_size tokens")
        self.windows.append(idx.clone())
        h = self.emb[idx.long()] + self.pos[:t]  # (B, t, d)
        running = h.cumsum(dim=1) / torch.arange(1, t + 1, dtype=torch.float64)[:, None]  # causal mean
        return (torch.tanh(running) @ self.out).float()  # (B, t, V)


def _reference(model: _ToyLM, idx: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        logits = model(idx[:, -model.block_size:])
        idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    model.windows.clear()
    return idx


def _prompt(seed: int, b: int, t: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def _run(generate_greedy, model, idx, n) -> torch.Tensor:
    out = generate_greedy(model, idx, n, model.block_size)
    b, t = idx.shape
    expect_tensor(out, f"generate_greedy with a prompt of shape {(b, t)} and max_new_tokens={n}", (b, t + n))
    assert not out.dtype.is_floating_point and out.dtype != torch.bool, (
        f"generate_greedy must return integer token ids (the prompt's dtype, torch.long); got {out.dtype}"
    )
    return out


@check(points=1)
def test_prompt_then_new_ids(generate_greedy):
    """returns (B, T + max_new_tokens) ids: the prompt, then new ids of the vocabulary"""
    for seed, (b, t, n, vocab, block) in enumerate([(2, 3, 4, 11, 16), (1, 1, 5, 7, 8), (3, 4, 0, 9, 8),
                                                    (1, 6, 1, 13, 6)]):
        model = _ToyLM(12100 + seed, vocab, block)
        idx = _prompt(12150 + seed, b, t, vocab)
        out = _run(generate_greedy, model, idx, n)
        assert torch.equal(out[:, :t].long(), idx), (
            f"the first {t} ids of every row must be the prompt, unchanged; append the new ids after it"
        )
        new = out[:, t:]
        assert new.numel() == 0 or (0 <= int(new.min()) and int(new.max()) < vocab), (
            f"the new ids must be token ids 0 .. V-1 = {vocab - 1}: the arg max over the vocabulary (last dim)"
        )


@check(points=1)
def test_argmax_of_last_position(generate_greedy):
    """each new id is the arg max of the logits at the last position of the sequence so far"""
    for seed, (b, t, n, vocab, block) in enumerate([(2, 3, 5, 11, 8), (3, 1, 6, 17, 8), (1, 5, 3, 9, 8)]):
        model = _ToyLM(12200 + seed, vocab, block)
        idx = _prompt(12250 + seed, b, t, vocab)
        expected = _reference(model, idx, n)
        out = _run(generate_greedy, model, idx, n)
        wrong = (out.long() != expected).any(dim=0).nonzero().flatten().tolist()
        assert not wrong, (
            f"prompt of shape {(b, t)}, {n} new tokens: the ids differ from greedy decoding first at position "
            f"{wrong[0]}: call the model on the sequence so far and take logits[:, -1] (the LAST position "
            f"predicts the next token), arg max over the vocabulary, append, repeat"
        )


@check(points=1)
def test_window_is_last_block_size_tokens(generate_greedy):
    """the model is fed the last block_size tokens of the sequence so far (the window slides)"""
    for seed, (b, t, n, vocab, block) in enumerate([(2, 3, 7, 11, 5), (1, 9, 4, 13, 6), (2, 4, 3, 7, 4)]):
        model = _ToyLM(12300 + seed, vocab, block)
        idx = _prompt(12350 + seed, b, t, vocab)
        out = _run(generate_greedy, model, idx, n).long()
        assert len(model.windows) >= n, f"the model was called {len(model.windows)} times for {n} new tokens"
        calls = model.windows[-n:]
        for i, window in enumerate(calls):
            expected = out[:, : t + i][:, -block:]
            assert tuple(window.shape) == tuple(expected.shape) and torch.equal(window.long(), expected), (
                f"prompt of length {t}, block_size={block}: for new token {i + 1} the model must get the last "
                f"{expected.shape[1]} tokens of the {t + i} so far, shape {tuple(expected.shape)}; it got shape "
                f"{tuple(window.shape)}" + ("" if tuple(window.shape) != tuple(expected.shape) else
                                            " with other tokens: crop with idx[:, -block_size:]")
            )
