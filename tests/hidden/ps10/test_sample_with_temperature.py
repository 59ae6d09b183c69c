"""Hidden checks for ps10 `sample_with_temperature(logits, temperature, u)`: one token per row of logits (B, V),
drawn by inverse-CDF sampling with the given uniform numbers u (B,) from softmax(logits / temperature), the arg
max when temperature is 0. The reference is computed here in float64: the token is the first index (in
vocabulary order) whose cumulative probability is greater than u.

The random u are kept at least 1e-5 away from every cumulative probability, so float32 rounding cannot change
the answer; only the check on zero-probability tokens uses u = 0 exactly, on purpose.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _reference(logits: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
    if temperature == 0:
        return logits.double().argmax(dim=-1)
    cdf = torch.softmax(logits.double() / temperature, dim=-1).cumsum(dim=-1)
    return torch.searchsorted(cdf, u.double()[:, None], right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)


def _logits(seed: int, b: int, v: int, scale: float = 2.0) -> torch.Tensor:
    return scale * torch.randn(b, v, generator=torch.Generator().manual_seed(seed))


def _safe_u(seed: int, logits: torch.Tensor, temperatures, margin: float = 1e-5) -> torch.Tensor:
    """Uniform numbers at least ``margin`` away from every cumulative probability (at each temperature)."""
    g = torch.Generator().manual_seed(seed)
    cdfs = [torch.softmax(logits.double() / tau, dim=-1).cumsum(dim=-1) for tau in temperatures if tau > 0]
    u = torch.empty(logits.shape[0], dtype=torch.float64)
    for row in range(logits.shape[0]):
        while True:
            value = float(torch.rand((), generator=g, dtype=torch.float64)) * (1 - 2 * margin) + margin
            if all(float((cdf[row] - value).abs().min()) > margin for cdf in cdfs):
                u[row] = value
                break
    return u.float()


def _run(sample_with_temperature, logits, temperature, u) -> torch.Tensor:
    out = sample_with_temperature(logits, temperature, u)
    b = logits.shape[0]
    expect_tensor(out, f"sample_with_temperature on logits of shape {tuple(logits.shape)}", (b,))
    assert out.dtype == torch.long, (
        f"sample_with_temperature must return token ids of dtype torch.long; got {out.dtype}"
    )
    return out


@check(points=1)
def test_greedy_at_zero(sample_with_temperature):
    """temperature 0: the arg max of every row, whatever u"""
    for seed, (b, v) in enumerate([(5, 12), (1, 30), (8, 3)]):
        logits = _logits(13100 + seed, b, v)
        u = torch.rand(b, generator=torch.Generator().manual_seed(13150 + seed))
        out = _run(sample_with_temperature, logits, 0.0, u)
        expected = logits.argmax(dim=-1)
        assert torch.equal(out, expected), (
            f"with temperature=0 each row's token must be its arg max (greedy decoding, the limit of tau -> 0): "
            f"expected {expected.tolist()}; got {out.tolist()}. Dividing by 0 gives inf and nan: handle 0 first"
        )


@check(points=1)
def test_inverse_cdf(sample_with_temperature):
    """temperature 1: the first token whose cumulative probability exceeds u"""
    for seed, (b, v) in enumerate([(16, 10), (1, 25), (12, 4)]):
        logits = _logits(13200 + seed, b, v)
        u = _safe_u(13250 + seed, logits, [1.0])
        out = _run(sample_with_temperature, logits, 1.0, u)
        expected = _reference(logits, 1.0, u)
        assert torch.equal(out, expected), (
            f"with temperature=1, logits of shape {(b, v)}: expected tokens {expected.tolist()}; got {out.tolist()}. "
            f"probs = softmax(logits) over each row, then the token is the first index i (vocabulary order) with "
            f"probs[0] + ... + probs[i] > u of that row"
        )


@check(points=1)
def test_temperature(sample_with_temperature):
    """temperature tau: the probabilities are softmax(logits / tau)"""
    for seed, (b, v, tau) in enumerate([(16, 10, 0.5), (16, 8, 2.0), (12, 20, 0.25), (1, 6, 3.0)]):
        logits = _logits(13300 + seed, b, v)
        u = _safe_u(13350 + seed, logits, [tau, 1.0])
        out = _run(sample_with_temperature, logits, tau, u)
        expected = _reference(logits, tau, u)
        assert torch.equal(out, expected), (
            f"with temperature={tau}, logits of shape {(b, v)}: expected tokens {expected.tolist()}; got "
            f"{out.tolist()}. Divide the logits by the temperature BEFORE the softmax: softmax(logits / tau) "
            f"(scaling the probabilities afterwards changes nothing once they are renormalised)"
        )


@check(points=1)
def test_zero_probability_never_drawn(sample_with_temperature):
    """tokens with logit -inf (probability 0) are never drawn, even with u = 0"""
    g = torch.Generator().manual_seed(13400)
    b, v = 24, 9
    logits = torch.randn(b, v, generator=g) * 0.3  # fairly flat rows
    for row in range(b):
        dropped = torch.randperm(v, generator=g)[: 3 + row % 4]
        logits[row, dropped] = float("-inf")
        if row % 3 == 0:
            logits[row, 0] = float("-inf")  # a zero-probability token first in the vocabulary
    u = _safe_u(13401, logits, [1.0])
    u[::3] = 0.0  # u = 0 exactly (torch.rand can return 0): the first token with probability > 0
    out = _run(sample_with_temperature, logits, 1.0, u)
    expected = _reference(logits, 1.0, u)
    drawn = logits[torch.arange(b), out.clamp(0, v - 1)]
    bad_rows = ((~torch.isfinite(drawn)) | (out < 0) | (out >= v)).nonzero().flatten().tolist()
    assert not bad_rows, (
        f"a token with logit -inf has probability 0 and must never be drawn (and a token id is 0 .. V-1); rows "
        f"{bad_rows} drew one. The token is the first index whose cumulative probability is strictly greater than u"
    )
    assert torch.equal(out, expected), (
        f"rows with -inf logits (as top-k and top-p leave them): expected tokens {expected.tolist()}; got "
        f"{out.tolist()}"
    )
