"""mt.flash_triton (the Triton kernels of chapter 12) under Triton's CPU interpreter.

References: F.scaled_dot_product_attention (values and gradients, float64 and float32), torch.logsumexp of the
explicit scores (the saved lse), finite differences (torch.autograd.gradcheck), and chapter 12's PyTorch tiled
version mt.flash.flash_attention. Sizes are tiny because the interpreter runs every kernel program in NumPy;
the lengths are chosen so that every code path runs: several key and query blocks, causal diagonal blocks,
ragged last blocks (lengths not a multiple of the interpreter's blocks of 16 and 32), T_q != T_k, and a head
size that is zero-padded (24 -> 32).

TRITON_INTERPRET=1 must be in the environment before triton is first imported in the process (triton defines its
own helpers at import) and stay set. So this file sets it at its top, when pytest imports it to collect the tests:
under pytest-xdist every worker collects every test file before running any test, and no test file imports
triton at collection, so the variable is in place in whichever worker runs these tests. Triton itself is imported
only by the ``ft`` fixture, in that worker. (It stays set for the rest of the session: only triton reads it.)
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton: see the docstring

import importlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mastering_transformers as mt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ft():
    module = importlib.import_module("mastering_transformers.flash_triton")
    if not module.INTERPRETED:
        pytest.fail("mastering_transformers.flash_triton was imported in this process before this file set "
                    "TRITON_INTERPRET=1, so its kernels are compiled for a GPU, not interpreted")
    return module


def make_qkv(seed, b, h, t_q, t_k, d, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, t_q, d, generator=g).to(dtype).requires_grad_()
    k = torch.randn(b, h, t_k, d, generator=g).to(dtype).requires_grad_()
    v = torch.randn(b, h, t_k, d, generator=g).to(dtype).requires_grad_()
    dout = torch.randn(b, h, t_q, d, generator=g).to(dtype)
    return q, k, v, dout


def value_and_grads(fn, q, k, v, dout):
    out = fn(q, k, v)
    return (out, *torch.autograd.grad(out, (q, k, v), dout))


def sdpa64(q, k, v, dout, causal, scale=None):
    """SDPA in float64 on float64 copies of the inputs: (out, dq, dk, dv)."""
    x = [t.detach().double().requires_grad_() for t in (q, k, v)]
    return value_and_grads(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=causal, scale=scale),
                           *x, dout.double())


# (causal, head size, T_q, T_k, scale). Interpreter blocks: forward 32 queries x 16 keys, dK/dV 32 keys x 16
# queries, dQ 32 queries x 16 keys. 40 = one full block + a ragged one; 50 vs 17: T_q != T_k; 24: padded to 32.
CASES = [
    (False, 32, 40, 40, None),
    (True, 32, 40, 40, None),
    (False, 64, 17, 50, None),
    (True, 64, 33, 33, 0.3),
    (False, 128, 20, 9, None),
    (True, 128, 48, 48, None),
    (True, 24, 35, 35, None),
]


@pytest.mark.parametrize("causal, d, t_q, t_k, scale", CASES)
def test_matches_sdpa_float64(ft, causal, d, t_q, t_k, scale):
    q, k, v, dout = make_qkv(d + t_q, 1, 2, t_q, t_k, d)
    ours = value_and_grads(lambda a, b, c: ft.flash_attention(a, b, c, causal=causal, scale=scale), q, k, v, dout)
    ref = sdpa64(q, k, v, dout, causal, scale)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, ref):
        assert a.shape == b.shape and a.dtype == torch.float64, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("causal", [False, True])
def test_lse_is_the_logsumexp_of_the_scores(ft, causal):
    q, k, v, _ = make_qkv(7, 2, 1, 45, 45, 64)
    out, lse = ft.flash_attention_forward(q, k, v, causal=causal)
    scores = (q @ k.transpose(-2, -1)).detach() / 8.0  # scale 1/sqrt(64)
    if causal:
        scores = scores.masked_fill(~mt.causal_mask(45, 45), float("-inf"))
    assert lse.shape == (2, 1, 45) and lse.dtype == torch.float64
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal).detach())


@pytest.mark.parametrize("causal, d, t", [(False, 64, 37), (True, 128, 37), (True, 32, 70)])
def test_matches_sdpa_float32(ft, causal, d, t):
    """float32 is computed in full float32 (no TF32): within 2e-5 of float64 SDPA at these sizes."""
    q, k, v, dout = make_qkv(3, 1, 2, t, t, d, torch.float32)
    ours = value_and_grads(lambda a, b, c: ft.flash_attention(a, b, c, causal=causal), q, k, v, dout)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, sdpa64(q, k, v, dout, causal)):
        assert a.dtype == torch.float32, name
        torch.testing.assert_close(a.double(), b, atol=2e-5, rtol=2e-5, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-3), (torch.bfloat16, 1.2e-2)])
@pytest.mark.parametrize("causal", [False, True])
def test_half_precision_accumulates_in_float32(ft, dtype, tol, causal):
    """Relative error (Frobenius) against float64 SDPA on the same rounded inputs stays near the dtype's epsilon
    (fp16 9.8e-4, bf16 7.8e-3): the probabilities are rounded to the input dtype before P V, as on the GPU, but
    every sum runs in float32. A float16 or bfloat16 accumulator would be off by far more at these lengths."""
    q, k, v, dout = make_qkv(11, 1, 2, 37, 37, 64, dtype)
    ours = value_and_grads(lambda a, b, c: ft.flash_attention(a, b, c, causal=causal), q, k, v, dout)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, sdpa64(q, k, v, dout, causal)):
        assert a.dtype == dtype, name
        err = ((a.double() - b).norm() / b.norm()).item()
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.1e} for {dtype}"


@pytest.mark.parametrize("causal, t_q, t_k", [(False, 40, 23), (True, 40, 40)])
def test_matches_pytorch_tiled_version(ft, causal, t_q, t_k):
    flash = importlib.import_module("mastering_transformers.flash")
    if not hasattr(flash, "flash_attention"):
        pytest.skip("mt.flash.flash_attention (chapter 12's PyTorch version) does not exist yet")
    q, k, v, dout = make_qkv(5, 1, 2, t_q, t_k, 32)
    ours = value_and_grads(lambda a, b, c: ft.flash_attention(a, b, c, causal=causal), q, k, v, dout)
    tiled = value_and_grads(lambda a, b, c: flash.flash_attention(a, b, c, causal=causal), q, k, v, dout)
    for name, a, b in zip(("out", "dq", "dk", "dv"), ours, tiled):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"{name}: {m}")


def test_gradcheck_against_finite_differences(ft):
    q, k, v, _ = make_qkv(13, 1, 1, 20, 20, 16)
    # fast mode checks random directional derivatives: a few dozen forward calls instead of one per input element
    assert torch.autograd.gradcheck(lambda a, b, c: ft.flash_attention(a, b, c, causal=True), (q, k, v),
                                    fast_mode=True)


def test_non_contiguous_inputs_and_the_backend_entry(ft):
    """split_heads gives transposed views; the 'triton' backend of MultiHeadAttention equals the 'sdpa' one."""
    torch.manual_seed(0)
    mha = mt.MultiHeadAttention(32, 2, backend="sdpa").double()
    x = torch.randn(2, 19, 32, dtype=torch.float64)
    expected = mha(x, is_causal=True)
    mha.backend = "triton"
    torch.testing.assert_close(mha(x, is_causal=True), expected, atol=1e-10, rtol=1e-10)
    q = mt.split_heads(torch.randn(1, 19, 32, dtype=torch.float64), 2)
    assert not q.is_contiguous()
    torch.testing.assert_close(ft.flash_attention(q, q, q), F.scaled_dot_product_attention(q, q, q))
    with pytest.raises(ValueError, match="is_causal=True or no mask"):
        mha(x, mask=mt.causal_mask(19))


def test_error_messages(ft):
    q = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError, match=r"shape \(B, H, T, D\)"):
        ft.flash_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="causal=True needs T_q == T_k"):
        ft.flash_attention(q, q[:, :, :5], q[:, :, :5], causal=True)
    with pytest.raises(ValueError, match="one head size D"):
        ft.flash_attention(q, q, torch.randn(1, 2, 8, 32))
    with pytest.raises(ValueError, match="keys and values must have the same length"):
        ft.flash_attention(q, q, q[:, :, :5])
    with pytest.raises(ValueError, match="share \\(B, H\\)"):
        ft.flash_attention(q, q[:, :1], q[:, :1])
    with pytest.raises(ValueError, match="between 1 and 256"):
        big = torch.randn(1, 1, 4, 512)
        ft.flash_attention(big, big, big)
    with pytest.raises(ValueError, match="same dtype"):
        ft.flash_attention(q, q.half(), q)
    with pytest.raises(ValueError, match="dtype must be float16, bfloat16 or float32"):
        i = torch.ones(1, 2, 8, 16, dtype=torch.int32)
        ft.flash_attention(i, i, i)
    with pytest.raises(ValueError, match="at least 1"):
        e = torch.randn(1, 2, 0, 16)
        ft.flash_attention(e, e, e)
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        ft.flash_attention(q, q, q, scale=0.0)


def test_compiled_mode_refuses_cpu_tensors_and_float64(ft, monkeypatch):
    """What a process without TRITON_INTERPRET sees (the flag is read once, at import): clear errors."""
    monkeypatch.setattr(ft, "INTERPRETED", False)
    q = torch.randn(1, 1, 4, 16)
    with pytest.raises(RuntimeError, match="set TRITON_INTERPRET=1 in the environment before anything imports triton"):
        ft.flash_attention(q, q, q)
    with pytest.raises(ValueError, match="float64 runs only under the interpreter"):
        ft.flash_attention(q.double(), q.double(), q.double())


def test_package_imports_without_triton_and_refuses_cpu_without_interpreter():
    """In a fresh process without TRITON_INTERPRET: `import mastering_transformers` does not import triton, and
    the kernel called on CPU tensors raises the RuntimeError that says how to run it on a CPU."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        import mastering_transformers as mt
        assert "triton" not in sys.modules, "importing the package imported triton"
        from mastering_transformers.flash_triton import INTERPRETED, flash_attention
        assert not INTERPRETED
        q = torch.randn(1, 1, 4, 16)
        try:
            flash_attention(q, q, q)
        except RuntimeError as e:
            print("RuntimeError:", e)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "RuntimeError: the Triton flash-attention kernels need CUDA tensors" in done.stdout
    assert "TRITON_INTERPRET=1" in done.stdout
