"""Hidden checks for ps07 `rope_rotate(x, positions)`, against rotation as complex multiplication
(torch.view_as_complex, pair (x[2i], x[2i+1]) -> z_i * exp(j p theta_i)) in float64.

One property per check: the shape (size-1 dims included), position 0, pair lengths, the relative property, the
reference, gradients.
"""

import torch

from mastering_transformers.grading import check
from mastering_transformers.grading.kit import assert_gradients_flow


def _reference(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    turn = torch.polar(torch.ones_like(theta), positions.double()[:, None] * theta)
    return torch.view_as_real(z * turn).reshape(x.shape)


def _x(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rotate(rope_rotate, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    out = rope_rotate(x, positions)
    assert isinstance(out, torch.Tensor), f"rope_rotate must return a tensor; got {type(out).__name__}"
    assert tuple(out.shape) == tuple(x.shape), (
        f"rope_rotate must keep the shape (..., T, D) = {tuple(x.shape)}; got {tuple(out.shape)}"
    )
    return out.double()


@check(points=1)
def test_shape(rope_rotate):
    """keeps the shape (..., T, D)"""
    for seed, shape in [(7101, (2, 3, 5, 8)), (7102, (6, 4)), (7103, (2, 9, 16)), (7104, (1, 1, 4)),
                        (7105, (3, 1, 6))]:
        _rotate(rope_rotate, _x(seed, *shape), torch.arange(shape[-2]))


@check(points=1)
def test_position_zero(rope_rotate):
    """position 0 leaves a vector unchanged"""
    x = _x(7201, 3, 5, 12)
    out = _rotate(rope_rotate, x, torch.zeros(5, dtype=torch.long))
    error = float((out - x.double()).abs().max())
    assert error < 1e-5, (
        f"at position 0 the angle is 0 * theta_i = 0, so nothing may change; your output moved by up to {error:.3g}: "
        "the angle must be position * theta_i"
    )


@check(points=1)
def test_pairs_keep_length(rope_rotate):
    """each pair (x[2i], x[2i+1]) keeps its length"""
    x = _x(7301, 2, 7, 16)
    out = _rotate(rope_rotate, x, torch.arange(7) + 3)
    lengths = lambda y: y.reshape(*y.shape[:-1], -1, 2).norm(dim=-1)  # noqa: E731
    error = float((lengths(out) - lengths(x.double())).abs().max())
    assert error < 1e-4, (
        f"a rotation keeps the length of each pair (x[2i], x[2i+1]); yours changes it by up to {error:.3g}: "
        "rotate neighbouring features together (x[..., 0::2] with x[..., 1::2]), not feature i with i + D/2"
    )


@check(points=1)
def test_relative(rope_rotate):
    """scores q_m . k_n depend only on the offset n - m"""
    g = torch.Generator().manual_seed(7401)
    t, d = 15, 20
    q, k = torch.randn(d, generator=g), torch.randn(d, generator=g)
    positions = torch.arange(t)
    scores = _rotate(rope_rotate, q.expand(t, d).clone(), positions) @ _rotate(rope_rotate, k.expand(t, d).clone(), positions).T
    for offset in range(-t + 1, t):
        diagonal = scores.diagonal(offset)
        spread = float(diagonal.max() - diagonal.min())
        assert spread < 1e-4, (
            f"with the same q at every position m and the same k at every n, q_m . k_n must depend only on n - m; "
            f"for n - m = {offset} it varies by {spread:.3g}: rotate queries and keys by position * theta_i"
        )


@check(points=1)
def test_matches_reference(rope_rotate):
    """matches RoPE: pair i rotated by position * 10000^(-2i/D), counter-clockwise"""
    for seed, shape, positions in [(7501, (2, 6, 8), torch.arange(6)), (7502, (4, 32), torch.arange(4) + 100),
                                   (7503, (3, 2, 5, 4), torch.tensor([4, 0, 9, 2, 7]))]:
        x = _x(seed, *shape)
        error = float((_rotate(rope_rotate, x, positions) - _reference(x, positions)).abs().max())
        assert error < 1e-4, (
            f"for x of shape {shape} and positions {positions.tolist()}, the result differs from RoPE by up to "
            f"{error:.3g}: x'[2i] = x[2i] cos a - x[2i+1] sin a, x'[2i+1] = x[2i] sin a + x[2i+1] cos a, "
            "a = position * 10000^(-2i/D)"
        )


@check(points=1)
def test_gradient(rope_rotate):
    """gradients flow to x (queries and keys are trained through the rotation)"""
    g = torch.Generator().manual_seed(7601)
    cases = [(torch.randn(*shape, generator=g, dtype=torch.float64), torch.arange(shape[-2]) + offset)
             for shape, offset in [((2, 5, 8), 0), ((1, 1, 4), 3), ((3, 6), 10)]]
    assert_gradients_flow(rope_rotate, cases, wrt=(0,), what="rope_rotate", seed=7602)
