"""mt.top_k_filter, mt.top_p_filter and mt.sample_next against references written here.

- top-k: the kept set equals the k largest found by a Python sort, and many draws never leave it;
- top-p: the kept set equals the smallest prefix of a Python-sorted list whose mass reaches p (a loop);
- temperature: 0 is the arg max, a tiny temperature equals it, and draw frequencies match softmax(l / tau);
- inputs are not modified; errors are clear.
"""

import math

import pytest
import torch

import mastering_transformers as mt


def random_logits(seed, rows=6, vocab=20, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, vocab, generator=g)).to(dtype)


def kept(filtered):
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in filtered]


# --- top-k -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 3, 19, 20, 50])
def test_top_k_keeps_exactly_the_k_largest(seed, k):
    logits = random_logits(seed)
    before = logits.clone()
    out = mt.top_k_filter(logits, k)
    assert torch.equal(logits, before)  # not modified in place
    for row, out_row, keep in zip(logits.tolist(), out, kept(out)):
        ranked = sorted(range(len(row)), key=lambda i: row[i], reverse=True)
        assert keep == set(ranked[:k])
        assert torch.equal(out_row[list(keep)], torch.tensor(row, dtype=out.dtype)[list(keep)])


def test_top_k_keeps_exactly_k_even_with_ties():
    out = mt.top_k_filter(torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 2.0, 2.0, 2.0]]), 2)
    assert [len(k) for k in kept(out)] == [2, 2]
    assert kept(out)[0] <= {0, 1, 2} and kept(out)[1] <= {1, 2, 3}


def test_top_k_draws_never_leave_the_k_largest():
    logits = random_logits(0, rows=4000, vocab=50, scale=1.0, dtype=torch.float32)
    k = 5
    draws = mt.sample_next(logits, temperature=1.5, top_k=k, generator=torch.Generator().manual_seed(1))
    largest = logits.argsort(dim=-1, descending=True)[:, :k]
    assert (draws[:, None] == largest).any(dim=-1).all()
    assert len(set(draws.tolist())) > k  # rows differ, so the draws do spread over many ids overall


def test_top_k_draw_frequencies_follow_the_renormalised_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(40000, 1)
    draws = mt.sample_next(logits, temperature=1.0, top_k=3, generator=torch.Generator().manual_seed(2))
    freq = torch.bincount(draws, minlength=6).double() / len(draws)
    p = torch.tensor([math.exp(2.0), math.exp(1.0), math.exp(0.5)])
    expected = torch.cat([p / p.sum(), torch.zeros(3)]).double()
    assert (freq - expected).abs().max() < 0.01  # 40,000 draws: standard error < 0.0025


# --- top-p -----------------------------------------------------------------------------------------


def nucleus_reference(row, p):
    """Loop: take tokens in decreasing probability until their mass is >= p."""
    m = max(row)
    weights = [math.exp(x - m) for x in row]
    total = sum(weights)
    probs = [w / total for w in weights]
    order = sorted(range(len(row)), key=lambda i: probs[i], reverse=True)
    chosen, mass = set(), 0.0
    for i in order:
        chosen.add(i)
        mass += probs[i]
        if mass >= p:
            break
    return chosen


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("p", [0.05, 0.3, 0.61, 0.9, 0.99])
def test_top_p_keeps_the_smallest_set_with_mass_at_least_p(seed, p):
    logits = random_logits(seed, scale=1.5 + seed / 4)
    before = logits.clone()
    out = mt.top_p_filter(logits, p)
    assert torch.equal(logits, before)
    probs = logits.softmax(-1)
    for r, keep in enumerate(kept(out)):
        assert keep == nucleus_reference(logits[r].tolist(), p)
        mass = probs[r, list(keep)].sum().item()
        smallest = min(probs[r, list(keep)].tolist())
        assert mass >= p and mass - smallest < p  # enough mass, and no kept token is superfluous
        torch.testing.assert_close(out[r, list(keep)], logits[r, list(keep)], rtol=0, atol=0)


def test_top_p_always_keeps_the_most_likely_token_and_p_one_keeps_all():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert kept(mt.top_p_filter(logits, 0.01)) == [{0}, {0}]  # ties: topmost in sort order
    assert kept(mt.top_p_filter(logits, 1.0)) == [{0, 1, 2}, {0, 1, 2}]


def test_top_p_stops_at_the_token_that_reaches_p_exactly():
    # Equal logits give exactly representable probabilities (1/2, 1/4): the boundary case is decided exactly.
    assert kept(mt.top_p_filter(torch.zeros(1, 2), 0.5)) == [{0}]
    assert kept(mt.top_p_filter(torch.zeros(1, 4), 0.5)) == [{0, 1}]
    assert kept(mt.top_p_filter(torch.zeros(1, 4), 0.75)) == [{0, 1, 2}]


def test_top_p_draws_stay_in_the_nucleus():
    logits = random_logits(3, rows=3000, vocab=30, scale=2.0, dtype=torch.float32)
    draws = mt.sample_next(logits, temperature=1.0, top_p=0.5, generator=torch.Generator().manual_seed(4))
    nuclei = [nucleus_reference(row, 0.5) for row in logits.double().tolist()]
    assert all(d in n for d, n in zip(draws.tolist(), nuclei))


def test_top_k_then_top_p_compose():
    logits = random_logits(5)
    both = mt.top_p_filter(mt.top_k_filter(logits, 6), 0.8)
    for r, keep in enumerate(kept(both)):
        top6 = set(logits[r].argsort(descending=True)[:6].tolist())
        restricted = [logits[r, i].item() if i in top6 else -math.inf for i in range(logits.shape[1])]
        assert keep == nucleus_reference([x if x != -math.inf else -1e30 for x in restricted], 0.8)


# --- temperature -----------------------------------------------------------------------------------


def test_temperature_zero_is_argmax_and_tiny_temperature_equals_it():
    logits = random_logits(6, rows=500, vocab=40, dtype=torch.float32)
    greedy = logits.argmax(-1)
    assert torch.equal(mt.sample_next(logits, temperature=0), greedy)
    assert torch.equal(mt.sample_next(logits, temperature=0, top_k=3, top_p=0.5), greedy)
    # A gap of g between the best two logits leaves the runner-up a chance of about exp(-g / tau).
    gaps = logits.topk(2, dim=-1).values.diff(dim=-1).abs().min().item()
    tau = gaps / 50
    cold = mt.sample_next(logits, temperature=tau, generator=torch.Generator().manual_seed(7))
    assert torch.equal(cold, greedy)


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_draw_frequencies_match_softmax_of_scaled_logits(tau):
    logits = torch.tensor([[1.0, 0.0, -0.5, -2.0]])
    draws = mt.sample_next(logits.repeat(40000, 1), temperature=tau, generator=torch.Generator().manual_seed(8))
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    e = [math.exp(x / tau) for x in logits[0].tolist()]
    expected = torch.tensor([x / sum(e) for x in e], dtype=torch.float64)
    assert (freq - expected).abs().max() < 0.01


def test_same_generator_seed_same_draws():
    logits = random_logits(9, rows=50, dtype=torch.float32)
    a = mt.sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(3))
    b = mt.sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.long and a.shape == (50,)


# --- errors ----------------------------------------------------------------------------------------


def test_clear_errors():
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        mt.top_k_filter(logits, 0)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\]"):
        mt.top_p_filter(logits, 0.0)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\]"):
        mt.sample_next(logits, top_p=1.5)
    with pytest.raises(ValueError, match="temperature must be a number >= 0"):
        mt.sample_next(logits, temperature=-1.0)
    with pytest.raises(ValueError, match=r"shape \(B, V\)"):
        mt.sample_next(torch.zeros(5))
