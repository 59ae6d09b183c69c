"""mt.optim and mt.train against independent references: F.cross_entropy, torch.optim.AdamW, torch's LR
schedulers and closed forms, torch.nn.utils.clip_grad_norm_, one large batch for accumulation, float32 for bf16
autocast, direct indexing for the evaluation windows; then checkpoint/resume exactness, the CLI (in process
and as a user runs it), its one-line errors, and the presets.
"""

import copy
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import mastering_transformers as mt
from mastering_transformers import train as T


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest, and immune to a busy machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    """A small character corpus (the first 60,000 characters of the course text), fast to load."""
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(mt.build_corpus()[:60_000], encoding="utf-8")
    return str(path)


def tiny_config(text_file, out_dir, **overrides):
    values = dict(data=text_file, out_dir=str(out_dir), max_iters=12, eval_interval=4, eval_iters=2)
    values.update(overrides)
    return mt.make_config("tiny", **values)


# --------------------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_cross_entropy_matches_torch_values_and_gradients(seed):
    g = torch.Generator().manual_seed(seed)
    b, t, v = [int(n) for n in torch.randint(1, 7, (3,), generator=g)]
    logits = (3 * torch.randn(b, t, v + 1, generator=g, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, v + 1, (b, t), generator=g)
    ours = mt.cross_entropy(logits, targets)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    (g_ref,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [1e3, 1e5, 1e30])
def test_cross_entropy_is_stable_for_huge_logits(scale):
    g = torch.Generator().manual_seed(1)
    logits = scale * torch.randn(5, 11, generator=g)
    targets = torch.randint(0, 11, (5,), generator=g)
    naive = -torch.log(torch.exp(logits).gather(1, targets[:, None]) / torch.exp(logits).sum(1, keepdim=True)).mean()
    ours = mt.cross_entropy(logits, targets)
    assert not torch.isfinite(naive)  # the textbook formula overflows ...
    assert torch.isfinite(ours)  # ... the log-sum-exp form does not
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets), rtol=1e-6, atol=0)


@pytest.mark.parametrize("ignore_index", [-100, 0, 3])
def test_cross_entropy_ignore_index(ignore_index):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 9, 6, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 6, (4, 9), generator=g)
    targets[torch.rand(4, 9, generator=g) < 0.4] = ignore_index
    ours = mt.cross_entropy(logits, targets, ignore_index=ignore_index)
    ref = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=ignore_index)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(ref, logits)[0])
    everything_ignored = torch.full((4, 9), -100)
    assert torch.isnan(mt.cross_entropy(logits, everything_ignored))
    assert torch.isnan(F.cross_entropy(logits.flatten(0, 1), everything_ignored.flatten()))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="same leading dims"):
        mt.cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        mt.cross_entropy(torch.randn(2, 5), torch.zeros(2))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        mt.cross_entropy(torch.randn(2, 5), torch.tensor([0, 5]))


# --------------------------------------------------------------------------------------------------
# AdamW
# --------------------------------------------------------------------------------------------------


def two_layer(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3), nn.LayerNorm(3)).double()


def groups(model, wd):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


@pytest.mark.parametrize(
    "betas,wd,eps", [((0.9, 0.999), 0.01, 1e-8), ((0.8, 0.95), 0.1, 1e-6), ((0.0, 0.5), 0.3, 1e-3)]
)
def test_adamw_matches_torch_step_for_step(betas, wd, eps):
    ours_model, ref_model = two_layer(0), two_layer(0)
    ours = mt.AdamW(groups(ours_model, wd), lr=1e-2, betas=betas, eps=eps, weight_decay=wd)
    ref = torch.optim.AdamW(groups(ref_model, wd), lr=1e-2, betas=betas, eps=eps, weight_decay=wd, foreach=False)
    g = torch.Generator().manual_seed(3)
    for step in range(12):
        x, y = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64)
        lr = 1e-2 * (0.5 + 0.5 * math.cos(step))  # a changing learning rate, as under a schedule
        for opt, model in ((ours, ours_model), (ref, ref_model)):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
        for p, q in zip(ours_model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert ours.state[next(ours_model.parameters())]["step"] == 12


def test_adamw_first_step_is_lr_times_sign_and_decay_is_decoupled():
    # Closed form: after bias correction the first update is -lr * g / (|g| + eps) = -lr * sign(g), plus decay.
    p = nn.Parameter(torch.tensor([2.0, -3.0, 0.5], dtype=torch.float64))
    opt = mt.AdamW([p], lr=0.1, eps=0.0, weight_decay=0.5)
    p.grad = torch.tensor([4.0, -1e-3, 7.0], dtype=torch.float64)
    before = p.detach().clone()
    opt.step()
    expected = before * (1 - 0.1 * 0.5) - 0.1 * torch.sign(p.grad)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)


def test_adamw_skips_parameters_without_gradients_and_resumes_from_state_dict():
    model, frozen = two_layer(1), nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = mt.AdamW(list(model.parameters()) + [frozen], lr=1e-2)
    g = torch.Generator().manual_seed(4)
    batches = [
        (torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, generator=g, dtype=torch.float64))
        for _ in range(6)
    ]

    def step(model, opt, x, y):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()

    for x, y in batches[:3]:
        step(model, opt, x, y)
    assert torch.equal(frozen, torch.ones(3, dtype=torch.float64)) and frozen not in opt.state
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    for x, y in batches[3:]:
        step(model, opt, x, y)
    resumed = two_layer(99)
    resumed.load_state_dict(saved_model)
    opt2 = mt.AdamW(list(resumed.parameters()) + [nn.Parameter(torch.ones(3, dtype=torch.float64))], lr=1e-2)
    opt2.load_state_dict(saved_state)
    for x, y in batches[3:]:
        step(resumed, opt2, x, y)
    for p, q in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_adamw_rejects_bad_arguments():
    for kwargs in (dict(lr=-1.0), dict(betas=(1.0, 0.9)), dict(eps=-1e-8), dict(weight_decay=-0.1)):
        with pytest.raises(ValueError):
            mt.AdamW([nn.Parameter(torch.zeros(1))], **kwargs)


# --------------------------------------------------------------------------------------------------
# the learning-rate schedule
# --------------------------------------------------------------------------------------------------


def test_schedule_closed_form_values():
    max_lr, min_lr, w, d = 1e-3, 1e-4, 10, 110
    lr = [mt.lr_at(s, max_lr, w, d, min_lr) for s in range(200)]
    assert lr[0] == pytest.approx(max_lr / 11)
    assert lr[9] == pytest.approx(max_lr * 10 / 11)
    assert lr[10] == pytest.approx(max_lr)  # the peak, where the cosine starts
    assert lr[60] == pytest.approx((max_lr + min_lr) / 2)  # halfway through the decay
    assert lr[35] == pytest.approx(min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi / 4)) / 2)
    assert lr[110] == pytest.approx(min_lr) and all(v == min_lr for v in lr[110:])
    assert all(a < b for a, b in zip(lr[:10], lr[1:11]))  # rises during warm-up
    assert all(a > b for a, b in zip(lr[10:110], lr[11:111]))  # falls during the decay
    assert mt.lr_at(0, max_lr, 0, d, min_lr) == pytest.approx(max_lr)  # no warm-up


def test_schedule_matches_torch_linear_then_cosine_schedulers():
    max_lr, min_lr, w, d = 2e-3, 2e-4, 7, 50
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=max_lr)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / (w + 1), end_factor=1.0, total_iters=w)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=d - w, eta_min=min_lr)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[w])
    for step in range(d + 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(mt.lr_at(step, max_lr, w, d, min_lr), rel=1e-9), step
        opt.step()
        sched.step()


def test_schedule_errors():
    with pytest.raises(ValueError):
        mt.lr_at(-1, 1e-3, 10, 100)
    with pytest.raises(ValueError):
        mt.lr_at(0, 1e-3, 100, 10)
    with pytest.raises(ValueError):
        mt.lr_at(0, 1e-3, 10, 100, min_lr=1e-2)


# --------------------------------------------------------------------------------------------------
# gradient clipping
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 1e3])
def test_clip_grad_norm_matches_torch(max_norm):
    g = torch.Generator().manual_seed(5)
    shapes = [(3, 4), (7,), (2, 2, 2), (5,)]
    ours = [nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    ref = [nn.Parameter(p.detach().clone()) for p in ours]
    for i, (a, b) in enumerate(zip(ours, ref)):
        if i == 2:
            continue  # this one has no gradient: both must skip it
        a.grad = torch.randn(a.shape, generator=g)
        b.grad = a.grad.clone()
    n_ours = mt.clip_grad_norm(ours, max_norm)
    n_ref = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(n_ours, n_ref)
    for a, b in zip(ours, ref):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)
    total_after = torch.sqrt(sum((a.grad**2).sum() for a in ours if a.grad is not None))
    assert total_after <= max_norm * (1 + 1e-5)
    assert mt.clip_grad_norm([nn.Parameter(torch.zeros(2))], 1.0) == 0.0  # nothing to clip


# --------------------------------------------------------------------------------------------------
# accumulation, autocast, evaluation
# --------------------------------------------------------------------------------------------------


def tiny_gpt(seed=0, dtype=torch.float64, dropout=0.0):
    torch.manual_seed(seed)
    return mt.GPT(mt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, dropout=dropout)).to(dtype)


def test_accumulated_gradient_equals_the_large_batch_gradient():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randint(0, 11, (12, 8), generator=g), torch.randint(0, 11, (12, 8), generator=g)
    big, acc = tiny_gpt(), tiny_gpt()
    _, loss = big(x, y)
    loss.backward()
    mean = T.accumulate_gradients(acc, [(x[i : i + 3], y[i : i + 3]) for i in range(0, 12, 3)])
    assert mean == pytest.approx(loss.item(), rel=1e-6)  # GPT computes its loss in float32
    for p, q in zip(big.parameters(), acc.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-7)
    # without dividing each micro-batch by their number, the gradient would be 4 times too large
    wrong = tiny_gpt()
    for i in range(0, 12, 3):
        wrong(x[i : i + 3], y[i : i + 3])[1].backward()
    assert torch.allclose(wrong.lm_head.weight.grad, 4 * big.lm_head.weight.grad)


def test_bf16_autocast_on_cpu():
    model = tiny_gpt(dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    x, y = torch.randint(0, 11, (4, 8), generator=g), torch.randint(0, 11, (4, 8), generator=g)
    with T.autocast_context("cpu", "bfloat16"):
        logits16, loss16 = model(x, y)
        assert model.lm_head(torch.randn(2, 8)).dtype == torch.bfloat16  # matmuls in bf16
    with T.autocast_context("cpu", "float32"):
        logits32, loss32 = model(x, y)
    assert logits16.dtype == torch.bfloat16 and logits32.dtype == torch.float32
    assert loss16.dtype == torch.float32  # the loss stays float32
    assert abs(loss16.item() - loss32.item()) < 2e-2 and loss16.item() != loss32.item()
    loss16.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())  # float32 master weights and grads
    with pytest.raises(ValueError):
        T.autocast_context("cpu", "float16")


def test_evaluate_loss_uses_fixed_windows_and_leaves_the_rest_alone():
    model = tiny_gpt(dtype=torch.float32, dropout=0.3)
    data = torch.randint(0, 11, (500,), generator=torch.Generator().manual_seed(8))
    rng_before = torch.get_rng_state()
    a = mt.evaluate_loss(model, data, batch_size=5, block_size=8, n_batches=3, seed=42)
    b = mt.evaluate_loss(model, data, batch_size=5, block_size=8, n_batches=3, seed=42)
    assert a == b and model.training  # deterministic (no dropout), mode restored
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global stream is untouched
    # reference: the same windows by direct indexing, dropout off
    g = torch.Generator().manual_seed(42)
    model.eval()
    losses = []
    with torch.no_grad():
        for _ in range(3):
            starts = torch.randint(len(data) - 8, (5,), generator=g)
            x = torch.stack([data[s : s + 8] for s in starts])
            y = torch.stack([data[s + 1 : s + 9] for s in starts])
            losses.append(F.cross_entropy(model(x)[0].flatten(0, 1), y.flatten()).item())
    assert a == pytest.approx(sum(losses) / 3, rel=1e-6)
    assert mt.evaluate_loss(model, data, 5, 8, 3, seed=43) != a


# --------------------------------------------------------------------------------------------------
# the loop: checkpoint and resume
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["torch", "mt"])
def test_interrupted_and_resumed_run_gives_exactly_the_same_losses(text_file, tmp_path, optimizer):
    kw = dict(dropout=0.1, optimizer=optimizer, grad_accum=2)  # dropout and accumulation use the random streams
    full = mt.train_gpt(tiny_config(text_file, tmp_path / "full", **kw))
    part = mt.train_gpt(tiny_config(text_file, tmp_path / "part", **kw), stop_at=6)
    assert part.final_eval is None and len(part.losses) == 6
    resumed = mt.train_gpt(tiny_config(text_file, tmp_path / "part", **kw), resume=tmp_path / "part" / "ckpt.pt")
    assert resumed.losses == full.losses  # exactly, not approximately
    assert [(r["step"], r["loss"], r["val_loss"]) for r in resumed.evals] == \
           [(r["step"], r["loss"], r["val_loss"]) for r in full.evals]
    assert resumed.final_eval == full.final_eval and resumed.sample == full.sample
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    # and the random state really matters: a run that restarts its streams at step 6 diverges
    fresh = mt.train_gpt(tiny_config(text_file, tmp_path / "fresh", seed=1, **kw))
    assert fresh.losses != full.losses
    rows = T.read_log_csv(tmp_path / "part" / "log.csv")
    assert [r["loss"] for r in rows if r["kind"] == "train"] == pytest.approx(full.losses, rel=1e-12)


def test_run_writes_its_files_and_the_model_loads_back(text_file, tmp_path):
    result = mt.train_gpt(tiny_config(text_file, tmp_path / "run", max_iters=8))
    for name in ("ckpt.pt", "model.pt", "log.csv", "loss.png", "sample.txt"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    assert (tmp_path / "run" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, meta = mt.load_checkpoint(tmp_path / "run" / "model.pt")
    assert meta["step"] == 8 and meta["vocab"] == result.vocab and not model.training
    x = torch.tensor([result.vocab.encode("Good morrow")])
    torch.testing.assert_close(model(x)[0], result.model.eval()(x)[0], rtol=0, atol=0)
    s = meta["eval_settings"]
    val = T.prepare_data(meta["config"]).val
    again = mt.evaluate_loss(model, val, s["batch_size"], s["block_size"], s["n_batches"], s["seed"])
    assert again == pytest.approx(meta["final_eval"]["val_loss"], rel=1e-6)
    assert (tmp_path / "run" / "sample.txt").read_text(encoding="utf-8") == result.sample
    assert result.sample.startswith("\n") and len(result.sample) == 1 + 40
    assert (tmp_path / "run" / "model.pt").stat().st_size < (tmp_path / "run" / "ckpt.pt").stat().st_size


def test_learning_rate_in_the_log_follows_the_schedule(text_file, tmp_path):
    cfg = tiny_config(text_file, tmp_path, max_iters=10, warmup_iters=3, lr_decay_iters=8)
    result = mt.train_gpt(cfg, write_files=False)
    lrs = [r["lr"] for r in result.log if r["kind"] == "train"]
    assert lrs == [mt.lr_at(s, cfg.lr, 3, 8, cfg.min_lr) for s in range(10)]
    assert all(r["grad_norm"] > 0 for r in result.log if r["kind"] == "train")


# --------------------------------------------------------------------------------------------------
# configuration and the command line
# --------------------------------------------------------------------------------------------------


def test_presets_are_valid_and_gpt2_124m_has_gpt2_small_shape():
    for name in mt.PRESETS:
        mt.make_config(name)
    cfg = mt.make_config("gpt2-124m")
    with torch.device("meta"):  # shapes only, no memory
        model = mt.GPT(T.model_config(cfg, cfg.vocab_size))
    v, t, c, n = 50304, 1024, 768, 12
    closed_form = v * c + t * c + n * (4 * c * c + 4 * c + 2 * 4 * c * c + 4 * c + c + 4 * c) + 2 * c
    assert model.num_parameters() == closed_form and 124e6 < closed_form < 125e6


def test_make_config_errors():
    with pytest.raises(mt.ConfigError, match="unknown key 'n_embed' \\(did you mean 'n_embd'\\?\\)"):
        mt.make_config("tiny", n_embed=32)
    with pytest.raises(mt.ConfigError, match="n_layer must be an int"):
        mt.make_config("tiny", n_layer=2.5)
    with pytest.raises(mt.ConfigError, match="compile must be true or false"):
        mt.make_config("tiny", compile="yes")
    with pytest.raises(mt.ConfigError, match="unknown preset"):
        mt.make_config("huge")
    with pytest.raises(mt.ConfigError, match="n_head must divide n_embd"):
        mt.make_config("tiny", n_embd=15)
    with pytest.raises(mt.ConfigError, match="warmup_iters"):
        mt.make_config("tiny", warmup_iters=50, max_iters=20)


def test_pick_device():
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu")
    assert mt.pick_device("auto").type == expected
    assert mt.pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(mt.ConfigError, match="CUDA is not available"):
            mt.pick_device("cuda")


def cli(capsys, *args):
    code = T.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_errors_are_one_line_with_status_2(text_file, tmp_path, capsys):
    cases = [
        (["--preset", "tiny", "--n_embed=32"], "unknown key 'n_embed'"),
        (["--preset", "tiny", "--n_layer=four"], "--n_layer=four: n_layer must be an int"),
        (["--preset", "tiny", "--bias=maybe"], "bias must be true or false"),
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "tiny", f"--data={text_file}", "--block_size=7000"],
         "block_size=7000 is longer than the validation"),
        (["--preset", "tiny", "--data=/no/such/file.txt"], "no such file"),
        (["--preset", "tiny", "n_layer=2"], "settings are written --key=value"),
        (["--preset", "tiny", "--resume", str(tmp_path / "missing.pt")], "no such file"),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, *args)
        assert code == 2, args
        assert err.count("\n") == 1 and err.startswith("train: error: ") and message in err, err
        assert "Traceback" not in err
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "--preset" in out and "n_embd" in out


def test_cli_refuses_a_checkpoint_from_another_config(text_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(capsys, "--preset", "tiny", f"--data={text_file}", f"--out_dir={out}", "--max_iters=4",
                       "--sample_chars=0")
    assert code == 0, err
    code, _, err = cli(capsys, "--preset", "tiny", f"--data={text_file}", "--n_embd=32",
                       "--resume", str(out / "ckpt.pt"))
    assert code == 2 and err.count("\n") == 1
    assert "is from another config: it has n_embd=16, this run n_embd=32" in err
    code, _, err = cli(capsys, "--resume", str(out / "model.pt"))
    assert code == 2 and "weights only" in err
    # --resume alone continues the run with its own settings; here it is also extended to 6 steps
    code, _, err = cli(capsys, "--resume", str(out / "ckpt.pt"), "--max_iters=6")
    assert code == 0 and "steps 4 to 6 of 6" in err, err
    assert [r["step"] for r in T.read_log_csv(out / "log.csv") if r["kind"] == "train"] == list(range(6))


def test_cli_as_a_user_runs_it(text_file, tmp_path):
    """python -m mastering_transformers.train in a fresh process: a whole run, then a bad value."""
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    base = [sys.executable, "-m", "mastering_transformers.train"]
    out = tmp_path / "cli"
    run = subprocess.run(base + ["--preset", "tiny", f"--data={text_file}", f"--out_dir={out}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Warning" not in run.stderr and "Traceback" not in run.stderr
    assert "final: train loss" in run.stderr and "tok_s=" in run.stderr and len(run.stdout) > 20
    assert len([r for r in T.read_log_csv(out / "log.csv") if r["kind"] == "train"]) == 20
    bad = subprocess.run(base + ["--preset", "tiny", "--lr=fast"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr == "train: error: --lr=fast: lr must be a number\n"
