"""Hidden checks for ps02 `causal_mask(T)`, against the closed form mask[i, j] = (j <= i).

One property per check: dtype and shape, the diagonal, the strictly lower and upper triangles.
"""

import torch

from mastering_transformers.grading import check


def _as_bool(mask, t: int) -> torch.Tensor:
    m = torch.as_tensor(mask)
    assert tuple(m.shape) == (t, t), f"causal_mask({t}) must have shape ({t}, {t}); got {tuple(m.shape)}"
    return m != 0


def _index(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(t)[:, None], torch.arange(t)[None, :]


@check(points=1)
def test_bool_square(causal_mask):
    """dtype torch.bool and shape (T, T)"""
    for t in (1, 5, 12):
        m = causal_mask(t)
        assert isinstance(m, torch.Tensor), f"causal_mask({t}) must return a tensor; got {type(m).__name__}"
        assert m.dtype == torch.bool, f"the mask must be boolean (True = may attend); got dtype {m.dtype}"
        assert tuple(m.shape) == (t, t), f"causal_mask({t}) must have shape ({t}, {t}); got {tuple(m.shape)}"


@check(points=1)
def test_diagonal(causal_mask):
    """the diagonal is allowed: every token attends to itself"""
    for t in (6, 11):
        diagonal = _as_bool(causal_mask(t), t).diagonal()
        blocked = [i for i in range(t) if not diagonal[i]]
        assert not blocked, (
            f"mask[i, i] must be True (token i may attend to itself, j <= i); causal_mask({t}) blocks it "
            f"at i = {blocked}"
        )


@check(points=1)
def test_past_and_future(causal_mask):
    """the past is allowed (j < i), the future forbidden (j > i)"""
    for t in (7, 10):
        m = _as_bool(causal_mask(t), t)
        i, j = _index(t)
        assert m[i > j].all(), f"mask[i, j] must be True for every past key j < i; causal_mask({t}) blocks some"
        future = [(a, b) for a in range(t) for b in range(a + 1, t) if m[a, b]]
        assert not future, f"mask[i, j] must be False for future keys j > i; causal_mask({t}) allows {future[:3]}"
