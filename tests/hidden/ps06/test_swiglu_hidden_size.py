"""Hidden checks for ps06 `swiglu_hidden_size(d_model, multiple_of=8)`, against the closed form: the smallest
multiple of `multiple_of` that is >= 8 d_model / 3, computed in exact integer arithmetic.
"""

from mastering_transformers.grading import check


def _reference(d_model: int, multiple_of: int = 8) -> int:
    exact = -(-8 * d_model // 3)  # ceil(8 d / 3)
    return multiple_of * -(-exact // multiple_of)


def _call(swiglu_hidden_size, d_model, multiple_of=None):
    h = swiglu_hidden_size(d_model) if multiple_of is None else swiglu_hidden_size(d_model, multiple_of)
    return h


@check(points=1)
def test_integer_multiple(swiglu_hidden_size):
    """returns an int that is a multiple of 8 (the default multiple_of)"""
    for d in [5, 64, 100, 333, 770]:
        h = _call(swiglu_hidden_size, d)
        assert isinstance(h, int) and not isinstance(h, bool), (
            f"a layer size must be a Python int; swiglu_hidden_size({d}) returned {h!r} of type {type(h).__name__} "
            "(use integer arithmetic, or int(...) around math.ceil)"
        )
        assert h % 8 == 0, f"swiglu_hidden_size({d}) = {h} is not a multiple of 8"


@check(points=1)
def test_exact_when_divisible(swiglu_hidden_size):
    """exactly 8 d_model / 3 when that is already a multiple of 8"""
    for d in [3, 48, 96, 384, 1536]:
        h = _call(swiglu_hidden_size, d)
        assert h == 8 * d // 3, (
            f"for d_model = {d}, 8 d_model / 3 = {8 * d // 3} is already a multiple of 8, so it is the answer "
            f"(3 * {d} * {8 * d // 3} = 8 * {d}^2 parameters, the MLP's); got {h!r}"
        )


@check(points=1)
def test_rounds_up(swiglu_hidden_size):
    """rounds up: the smallest multiple of 8 that is >= 8 d_model / 3"""
    for d in [1, 10, 64, 100, 500, 1000]:
        h, expected = _call(swiglu_hidden_size, d), _reference(d)
        assert h == expected, (
            f"for d_model = {d}, 8 d_model / 3 = {8 * d / 3:.2f}, and the smallest multiple of 8 at least that "
            f"large is {expected}; got {h!r} (round up, never down: a smaller SwiGLU has fewer parameters than the MLP)"
        )


@check(points=1)
def test_multiple_of(swiglu_hidden_size):
    """honours the multiple_of argument"""
    for d, m in [(4096, 256), (96, 64), (100, 7), (10, 1)]:
        h, expected = _call(swiglu_hidden_size, d, m), _reference(d, m)
        assert h == expected, (
            f"swiglu_hidden_size({d}, multiple_of={m}) must be the smallest multiple of {m} that is >= "
            f"8 * {d} / 3 = {8 * d / 3:.2f}, i.e. {expected}; got {h!r}"
        )
