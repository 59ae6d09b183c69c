"""Hidden checks for ps16 `mask_prompt_targets(ids, prompt_lengths, lengths, ignore_index=-100) -> (x, y)`, against a
loop written here over every row and position:

    x[b, t] = ids[b, t];   y[b, t] = ids[b, t + 1] if prompt_lengths[b] <= t + 1 < lengths[b] else ignore_index

One property per check: x and the exact shapes and dtypes (B = 1 and L = 2 included); the prompt targets masked,
the first response token kept (rows without padding); the padding masked (only the padding positions judged);
another ignore_index (0, a large id, -1) written into every masked target (rows without padding). The inputs are
passed as copies and must not change.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import expect_tensor


def _batch(seed, b, l, prompt=None, full=False):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 90, (b, l), generator=g)
    lengths = torch.full((b,), l) if full else torch.randint(2, l + 1, (b,), generator=g)
    if prompt is None:
        prompt_lengths = torch.stack([torch.randint(1, int(n), (1,), generator=g)[0] for n in lengths])
    else:
        prompt_lengths = torch.full((b,), prompt)
    return ids, prompt_lengths, lengths


def _reference(ids, prompt_lengths, lengths, ignore_index=-100):
    b, l = ids.shape
    y = torch.full((b, l - 1), ignore_index, dtype=torch.long)
    for i in range(b):
        for t in range(l - 1):
            if int(prompt_lengths[i]) <= t + 1 < int(lengths[i]):
                y[i, t] = ids[i, t + 1]
    return ids[:, :-1].clone(), y


def _call(fn, ids, prompt_lengths, lengths, **kw):
    out = fn(ids.clone(), prompt_lengths.clone(), lengths.clone(), **kw)
    assert isinstance(out, (tuple, list)) and len(out) == 2, f"return a tuple (x, y); got {type(out).__name__}"
    b, l = ids.shape
    for name, t in zip("xy", out):
        expect_tensor(t, name, (b, l - 1))
        assert t.dtype == torch.long, f"{name} must be int64 token ids (targets for the loss); got {t.dtype}"
    return out


def _where(y, ref, ids, prompt_lengths, lengths):
    bad = (y != ref).nonzero()
    i, t = (int(v) for v in bad[0])
    return (f"row {i} (prompt {int(prompt_lengths[i])} tokens, length {int(lengths[i])}), target position t = {t} "
            f"(the token ids[{i}, {t + 1}]): expected {int(ref[i, t])}, got {int(y[i, t])}")


@check(points=1)
def test_inputs_and_shapes(mask_prompt_targets):
    """x = ids[:, :-1]; x and y int64 of shape (B, L - 1), B = 1 and L = 2 included"""
    for seed, (b, l) in enumerate([(3, 7), (1, 2), (1, 9), (5, 2)]):
        ids, p, n = _batch(17200 + seed, b, l)
        x, _ = _call(mask_prompt_targets, ids, p, n)
        assert torch.equal(x, ids[:, :-1]), f"x must be ids[:, :-1] (every token but the last) for ids of shape {(b, l)}"


@check(points=1)
def test_prompt_masked(mask_prompt_targets):
    """prompt targets masked, the first response token kept"""
    for seed, (b, l) in enumerate([(4, 10), (1, 3), (6, 17)]):
        ids, p, n = _batch(17300 + seed, b, l, full=True)
        _, y = _call(mask_prompt_targets, ids, p, n)
        ref = _reference(ids, p, n)[1]
        assert torch.equal(y, ref), (
            f"{_where(y, ref, ids, p, n)}. y[b, t] is the token at position t + 1: it is masked when t + 1 < "
            f"prompt_length, and the first response token (t + 1 = prompt_length) is a target"
        )


@check(points=1)
def test_padding_masked(mask_prompt_targets):
    """padding targets (positions >= length) masked"""  # only the padding positions are judged here
    for seed, (b, l) in enumerate([(5, 9), (1, 6), (7, 14)]):
        ids, p, n = _batch(17400 + seed, b, l, prompt=1)
        n[0] = 2  # a row that is almost all padding
        _, y = _call(mask_prompt_targets, ids, p, n)
        padding = torch.arange(1, l)[None, :] >= n[:, None]  # targets at positions >= length
        kept = (y != -100) & padding
        if bool(kept.any()):
            i, t = (int(v) for v in kept.nonzero()[0])
            raise AssertionError(
                f"row {i} has length {int(n[i])}, so the target at t = {t} (ids[{i}, {t + 1}], padding) must be -100; "
                f"got {int(y[i, t])}. Targets at positions >= length are padding and must be ignored"
            )


@check(points=1)
def test_other_ignore_index(mask_prompt_targets):
    """another ignore_index (0, or a large id) is used for every masked target"""
    for seed, (b, l, ignore) in enumerate([(4, 8, 0), (3, 11, 12345), (1, 5, -1)]):
        ids, p, n = _batch(17500 + seed, b, l, full=True)
        _, y = _call(mask_prompt_targets, ids, p, n, ignore_index=ignore)
        masked = _reference(ids, p, n, -100)[1] == -100  # the prompt targets
        assert bool((y[masked] == ignore).all()), (
            f"with ignore_index={ignore} every masked (prompt) target must hold {ignore}; got "
            f"{sorted(set(y[masked].tolist()))[:5]} there (use the argument, not -100)"
        )
