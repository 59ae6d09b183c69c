"""Hostile and broken submissions, graded by the real pipeline (nbgrader + sandbox) in the same runs as good
ones, across three assignments (ps02, ps03, ps05). Each gets its exact expected grade: nothing inflated,
nothing lost, nothing leaked, and every other student unaffected.

The threat model: a student controls everything their notebook runs. Their code runs only in the sandboxed
worker; the hidden checks run in nbgrader's process and see plain data. So patching the runner, torch or
the display, returning a lying tensor subclass, pointing the environment at fake checks, reading or writing
course files, other students or the gradebook, leaving processes behind, exiting, hanging, allocating or
printing without bound all cost at most the function they happen in, and usually nothing at all.
"""

from __future__ import annotations

import copy
import html
import os
import re
import socket
import subprocess
import threading
import uuid

import nbformat
import pytest

from gradingkit import ROOT, Assignment, cell, grade, replaced, without_cell

PS02, PS03, PS05 = Assignment("ps02_attention"), Assignment("ps03_scaling"), Assignment("ps05_normalisation")
HIDDEN_MARKER = "_reference_weights"  # a name defined only in tests/hidden/ps02/test_attention.py
VICTIM_MARKER = "VICTIM-SECRET-7731"
ZOMBIE_MARKER = f"MT-ZOMBIE-{uuid.uuid4().hex[:8]}"
CHECK_TIMEOUT = 3


def filled(a: Assignment, **cells: str):
    """The exercise with the solution code typed in, and some answer cells replaced."""
    nb = a.filled_exercise()
    for grade_id, source in cells.items():
        nb = replaced(nb, grade_id, source)
    return nb


def stubs(a: Assignment, **cells: str):
    """The untouched exercise (every answer a stub), with some answer cells replaced."""
    nb = a.exercise()
    for grade_id, source in cells.items():
        nb = replaced(nb, grade_id, source)
    return nb


def sol(a: Assignment, name: str) -> str:
    return a.solution_code(name)


STUB = "\n\ndef {name}(*args, **kwargs):\n    raise NotImplementedError()\n"

PATCH_RUNNER = """
import sys
import mastering_transformers.grading as g
for module in list(sys.modules.values()):
    if getattr(module, "__name__", "").startswith("mastering_transformers.grading"):
        for name in dir(module):
            if "check" in name.lower() or "grade" in name.lower() or "score" in name.lower():
                try:
                    setattr(module, name, lambda *a, **k: 14.0)
                except Exception:
                    pass
g.run_checks = lambda *a, **k: 14.0
"""

PATCH_TORCH = """
import math
import torch
import torch.nn.functional as F
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.isclose = lambda a, b, *r, **k: torch.ones_like(a, dtype=torch.bool)
torch.Tensor.__sub__ = lambda a, b: torch.zeros(())
torch.Tensor.abs = lambda self: torch.zeros(())
torch.Tensor.max = lambda self, *a, **k: torch.zeros(())
F.scaled_dot_product_attention = lambda *a, **k: torch.zeros(())
math.sqrt = lambda x: 1.0
math.isclose = lambda *a, **k: True
"""

SUBCLASS = """
class Liar(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return torch.tensor(0.0)  # every operation on it, comparisons and errors included, "passes"
    def __eq__(self, other):
        return True

def {name}(*args, **kwargs):
    return torch.zeros(1).as_subclass(Liar)
"""

DISPLAY_TRICKS = """
import builtins, sys
sys.displayhook = lambda value: print("14.0")
try:
    ip = get_ipython()
    ip.display_formatter.formatters["text/plain"].for_type(float, lambda *a: "14.0")
    ip.input_transformers_cleanup.append(lambda lines: ["14.0\\n"])
except Exception:
    pass
try:
    import numpy as np, torch
    torch.set_printoptions(precision=0)
    np.set_printoptions(precision=0)
except Exception:
    pass
print("attention_scores: 3/3 points")
print("14.0")
"""

FAKE_CHECKS = """
import os
os.makedirs("/tmp/fake/ps02", exist_ok=True)
with open("/tmp/fake/ps02/test_attention_scores.py", "w") as f:
    f.write("from mastering_transformers.grading import check\\n@check(points=3)\\ndef test_ok(fn):\\n    pass\\n")
os.environ["MT_HIDDEN_TESTS"] = "/tmp/fake"
os.chdir("/tmp/fake")
"""

SNOOP = """
import glob, os
root = {root!r}
found = []
for pattern in [root + "/tests/hidden/**/*.py", root + "/solutions/**/*.ipynb", root + "/*", "/tmp/**",
                "/work/*", "/root/*", "/tmp/mt-grade-*/**", "../*", "/proc/*/cwd/*", "/proc/*/root/work/*"]:
    try:
        found += glob.glob(pattern, recursive=True)[:20]
    except Exception as exc:
        found.append(repr(exc))
print("snooped", len(found))
for path in found:
    try:
        print(path, open(path, errors="replace").read(3000))
    except Exception as exc:
        print(path, exc)
"""

WRITE_EVERYWHERE = """
import glob, os, sqlite3
root = {root!r}
import mastering_transformers as mt
targets = [root + "/gradebook.db", root + "/tests/hidden/ps02/test_attention.py", mt.__file__,
           root + "/solutions/ps02_attention/ps02_attention.ipynb", "/tmp/../gradebook.db"]
targets += glob.glob("/tmp/mt-grade-*/**/gradebook.db", recursive=True)
for path in targets:
    try:
        with open(path, "a") as f:
            f.write("# tampered")
    except Exception as exc:
        print("cannot write", path, type(exc).__name__)
    try:
        db = sqlite3.connect(path)
        db.execute("UPDATE grade SET auto_score = 100")
        db.commit()
    except Exception as exc:
        print("cannot update", path, type(exc).__name__)
try:
    os.symlink(root + "/solutions", "/tmp/s")
    print(open("/tmp/s/ps02_attention/ps02_attention.ipynb").read()[:100])
except Exception as exc:
    print("symlink", type(exc).__name__)
"""

BACKGROUND = """
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # {marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)  # {marker}"])
    os._exit(0)
"""

CALL_EXITS = """
def {name}(*args, **kwargs):
    import sys
    sys.exit(0)
"""

CALL_OS_EXITS = """
def {name}(*args, **kwargs):
    import os
    os._exit(1)
"""

ALARM_CANCELLED = """
def causal_mask(T):
    import signal
    signal.alarm(0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    while True:
        pass
"""

ALARM_IGNORED = """
def stable_softmax(x, dim=-1):
    import signal
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        pass
"""

SWALLOWS_BASE_EXCEPTIONS = """
def attention(q, k, v, mask=None):
    import time
    while True:
        try:
            time.sleep(0.05)
        except BaseException:
            pass
"""

C_LEVEL_LOOP = """
def attention_scores(q, k):
    import re
    re.match(r"(a+)+$", "a" * 64 + "b")  # exponential backtracking inside the C regex engine
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
"""

HUGE_ALLOCATION = """
def attention(q, k, v, mask=None):
    block = torch.ones(3 * 2**30, dtype=torch.uint8)  # 3 GB
    return block
"""

UNSENDABLE = """
class Anything:
    def __eq__(self, other):
        return True
    shape = (2, 3)

def attention_scores(q, k):
    return Anything()
"""

NETWORK = """
def causal_mask(T):
    import socket
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()  # only works with network access
    return torch.ones(T, T, dtype=torch.bool).tril()
"""

FORGE_WIRE = """
import sys
wire = sys.modules.get("wire")
if wire is not None:
    wire.encode = lambda value, register_callable=None: ({"$": "pickle", "data": "evil"}, [])
"""

WRITES_STDERR = """
import os, sys, warnings

def attention_scores(q, k):
    print("debugging attention_scores", file=sys.stderr)
    warnings.warn("a warning raised by the student's code")
    os.write(2, b"written to file descriptor 2\\n")
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

print("top-level output to stderr", file=sys.stderr)
"""

# Passes the visible tests (T <= 4) but never ends for longer sequences: the increment is on one branch.
LOOPS_FOR_LONG_SEQUENCES = """
def causal_mask(T):
    mask = torch.zeros(T, T, dtype=torch.bool)
    i = 0
    while i < T:
        mask[i, : i + 1] = True
        if i < 4:
            i += 1
    return mask
"""

WRITES_REPLY_PIPE = """
def attention(q, k, v, mask=None):
    import os
    for fd in range(3, 64):
        try:
            os.write(fd, b"\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x10{\\"kind\\": \\"result\\"}garbage")
        except OSError:
            pass
    scores = attention_scores(q, k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = stable_softmax(scores, dim=-1)
    return weights @ v, weights
"""

MUTATES_INPUT = """
def stable_softmax(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)  # changes the caller's tensor
    exps = x.exp()
    return exps / exps.sum(dim=dim, keepdim=True)
"""

FORBIDDEN_DIRECT = """
def stable_softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)
"""

FORBIDDEN_DYNAMIC = """
def stable_softmax(x, dim=-1):
    return getattr(torch, "soft" + "max")(x, dim=dim)
"""


def _split(a: Assignment, name: str):
    """The answer cell split in two cells with the same grade_id (what Jupyter's split does)."""
    nb = a.filled_exercise()
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    first = copy.deepcopy(nb.cells[index])
    first.source, first.id = "import math as _math_for_the_split", f"{first.id}-a"
    nb.cells.insert(index, first)
    return nb


def _copied_buggy_first(a: Assignment, name: str, buggy: str):
    nb = a.filled_exercise()
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    copy_ = copy.deepcopy(nb.cells[index])
    copy_.source, copy_.id = buggy, f"{copy_.id}-copy"
    nb.cells.insert(index, copy_)
    return nb


def _moved(a: Assignment, name: str):
    nb = a.filled_exercise()
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == name)
    nb.cells.append(nb.cells.pop(index))
    return nb


def _markdown(a: Assignment, name: str):
    nb = a.filled_exercise()
    c = cell(nb, name)
    c.cell_type = "markdown"
    c.pop("outputs", None)
    c.pop("execution_count", None)
    return nb


def _v3(a: Assignment) -> str:
    return nbformat.writes(nbformat.convert(a.filled_exercise(), 3), version=3)


@pytest.fixture(scope="module")
def server_port():
    """A TCP server on the host's loopback: code in the sandbox must not reach it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    threading.Thread(target=lambda: [srv.accept() for _ in iter(int, 1)], daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def _fingerprint() -> str:
    from mastering_transformers.grading.checker import fingerprint
    from mastering_transformers.grading.sandbox import PACKAGE

    return fingerprint([ROOT / "tests" / "hidden", PACKAGE / "grading", PACKAGE / "__init__.py", ROOT / "solutions"])


# student -> (notebook or raw file content, expected score, text the status must contain)
def _ps02_cases(port: int) -> dict:
    a = PS02
    root = str(ROOT)
    victim = filled(a, attention=f"# {VICTIM_MARKER}\n" + sol(a, "attention"))
    return {
        "solution": (a.solution(), 14, "graded"),
        "filled_exercise": (a.filled_exercise(), 14, "graded"),
        "victim": (victim, 14, "graded"),
        "runner_replaced": (stubs(a, attention_scores=PATCH_RUNNER + STUB.format(name="attention_scores")), 0, "graded"),
        "torch_patched": (stubs(a, attention_scores=PATCH_TORCH + "\ndef attention_scores(q, k):\n    return torch.zeros(1)\n"),
                          0, "graded"),
        "tensor_subclass": (stubs(a, **{n: SUBCLASS.format(name=n) for n in a.functions}), 0, "graded"),
        "display_tricks": (stubs(a, attention_scores=DISPLAY_TRICKS + STUB.format(name="attention_scores")), 0, "graded"),
        "fake_checks": (stubs(a, attention_scores=FAKE_CHECKS + STUB.format(name="attention_scores")), 0, "graded"),
        "snoops": (filled(a, attention_scores=SNOOP.format(root=root) + sol(a, "attention_scores")), 14, "graded"),
        "writes_everywhere": (filled(a, causal_mask=WRITE_EVERYWHERE.format(root=root) + sol(a, "causal_mask")),
                              14, "graded"),
        "background_process": (filled(a, causal_mask=BACKGROUND.format(marker=ZOMBIE_MARKER) + sol(a, "causal_mask")),
                               14, "graded"),
        "sys_exit_loading": (filled(a, attention_scores=sol(a, "attention_scores") + "\nimport sys\nsys.exit(0)"),
                             14, "attention_scores: your cell raised SystemExit"),
        "os_exit_loading": (filled(a, stable_softmax=sol(a, "stable_softmax") + "\nimport os\nos._exit(3)"),
                            14, "ended the grading process (exited with status 3) while loading"),
        "sys_exit_in_call": (filled(a, attention=CALL_EXITS.format(name="attention")), 10, "graded"),
        "os_exit_in_call": (filled(a, causal_mask=CALL_OS_EXITS.format(name="causal_mask")), 11, "graded"),
        "alarm_cancelled": (filled(a, causal_mask=ALARM_CANCELLED), 11, "graded"),
        "alarm_ignored": (filled(a, stable_softmax=ALARM_IGNORED), 10, "graded"),
        "base_exceptions_swallowed": (filled(a, attention=SWALLOWS_BASE_EXCEPTIONS), 10, "graded"),
        "c_level_loop": (filled(a, attention_scores=C_LEVEL_LOOP), 11, "graded"),
        "huge_output": (filled(a, attention_scores="import sys\nsys.stdout.write('x' * 100_000_000)\n"
                               + sol(a, "attention_scores")), 14, "graded"),
        "huge_allocation": (filled(a, attention=HUGE_ALLOCATION), 10, "graded"),
        "unsendable_result": (filled(a, attention_scores=UNSENDABLE), 11, "graded"),
        "network": (filled(a, causal_mask=NETWORK.format(port=port)), 11, "graded"),
        "forged_wire": (filled(a, attention_scores=FORGE_WIRE + sol(a, "attention_scores")), 0, "graded"),
        "writes_reply_pipe": (filled(a, attention=WRITES_REPLY_PIPE), 10, "graded"),
        "mutates_input": (filled(a, stable_softmax=MUTATES_INPUT), 10, "graded"),
        "forbidden_api": (filled(a, stable_softmax=FORBIDDEN_DIRECT), 10, "graded"),
        "forbidden_dynamic": (filled(a, stable_softmax=FORBIDDEN_DYNAMIC), 10, "graded"),
        "split_cell": (_split(a, "attention"), 14, "appears 2 times"),
        "copied_cell": (_copied_buggy_first(a, "causal_mask", "def causal_mask(T):\n    return None"), 14,
                        "appears 2 times"),
        "moved_cell": (_moved(a, "causal_mask"), 14, "cells were moved"),
        "markdown_cell": (_markdown(a, "stable_softmax"), 14, "was not a code cell"),
        "nbformat_v3": (_v3(a), 14, "nbformat v3 notebook upgraded"),
        "bom": ("\ufeff" + nbformat.writes(a.filled_exercise()), 14, "graded"),
        # broken rather than hostile
        "cell_raises": (filled(a, causal_mask="print(undefined_name)\n" + sol(a, "causal_mask")), 11,
                        "causal_mask: your cell raised NameError"),
        "function_renamed": (filled(a, attention=sol(a, "attention").replace("def attention(", "def my_attention(")),
                             10, "graded"),
        "loop_at_top_level": (filled(a, stable_softmax=sol(a, "stable_softmax") + "\n\nwhile True:\n    pass"), 14,
                              "stable_softmax: the statement at line"),
        "loops_for_long_inputs": (filled(a, causal_mask=LOOPS_FOR_LONG_SEQUENCES), 11, "graded"),
        "writes_stderr": (filled(a, attention_scores=WRITES_STDERR), 14, "graded"),
        "test_cell_deleted": (without_cell(a.filled_exercise(), "test_stable_softmax"), 14,
                              "locked cell test_stable_softmax was deleted: the original was graded"),
        "test_cell_edited": (_edited_test_cell(a), 10, "locked cell test_attention was edited: the original was graded"),
        "section_deleted": (without_cell(without_cell(a.filled_exercise(), "causal_mask"), "test_causal_mask"), 11,
                            "answer cell causal_mask is missing"),
        "corrupt_metadata": (_corrupt_metadata(a), 14, "graded"),
    }


def _edited_test_cell(a: Assignment):
    """attention left unimplemented, its test cell replaced by the full points and its points raised."""
    nb = replaced(a.filled_exercise(), "attention", "def attention(q, k, v, mask=None):\n    raise NotImplementedError()")
    nb = replaced(nb, "test_attention", "4")
    cell(nb, "test_attention").metadata["nbgrader"]["points"] = 40
    return nb


def _corrupt_metadata(a: Assignment):
    nb = a.filled_exercise()
    cell(nb, "test_attention").metadata["nbgrader"]["points"] = "ten"
    return nb


RAW = {  # entry -> (file content, status)
    "invalid_json.ipynb": ('{"cells": [', "invalid notebook: not valid JSON"),
    "not_a_notebook.ipynb": ('{"cells": 3, "metadata": {}}', "invalid notebook: valid JSON, but not a Jupyter notebook"),
    "fails_schema.ipynb": ('{"cells": 3, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "invalid notebook:"),
    "empty_folder/.keep": ("", "missing notebook: no ps02_attention.ipynb in empty_folder/"),
}


@pytest.fixture(scope="module")
def ps02(tmp_path_factory, server_port):
    cases = _ps02_cases(server_port)
    before = _fingerprint()
    extra = {
        ".DS_Store": b"\x00\x01binary",
        ".sneaky.ipynb": nbformat.writes(PS02.filled_exercise()),
        "Zoë Ångström/ps02_attention.ipynb": nbformat.writes(PS02.filled_exercise()),
        "two_notebooks/ps02_attention.ipynb": nbformat.writes(PS02.exercise()),
        "two_notebooks/final_version.ipynb": nbformat.writes(PS02.solution()),
        "ambiguous/a.ipynb": nbformat.writes(PS02.solution()),
        "ambiguous/b.ipynb": nbformat.writes(PS02.solution()),
        "notes.txt": "not a notebook",
        **{name: content for name, (content, _) in RAW.items()},
    }
    tmp = tmp_path_factory.mktemp("ps02_hostile")
    link_dir = tmp / "submissions"
    graded = grade(PS02, {k: v[0] for k, v in cases.items()}, tmp, load_timeout=10,
                   check_timeout=CHECK_TIMEOUT, extra_files=extra,
                   symlinks={"link_to_solution.ipynb": PS02.solution_path})
    graded.cases = cases
    graded.fingerprint_unchanged = _fingerprint() == before
    del link_dir
    return graded


PS02_IDS = sorted(_ps02_cases(0))


@pytest.mark.parametrize("student", PS02_IDS)
def test_ps02_hostile_or_broken_submission_gets_its_exact_grade(ps02, student):
    _, score, status = ps02.cases[student]
    row = ps02.by_student[student]
    assert ps02.score(student) == score, (row["status"], row["details"])
    assert status in row["status"], row["status"]
    assert ps02.feedback_path(student).is_file()


def test_at_least_thirty_hostile_cases_across_three_assignments():
    assert len(PS02_IDS) - 3 + len(_ps05_cases()) - 1 + len(_ps03_cases()) - 1 >= 30


@pytest.mark.parametrize("entry, student, score, status", [
    (".DS_Store", "DS_Store", 0, "not a notebook"),
    (".sneaky.ipynb", "sneaky", 14, "graded as student id sneaky"),
    ("Zoë Ångström", "Zoe_Angstrom", 14, "graded as student id Zoe_Angstrom"),
    ("two_notebooks", "two_notebooks", 0, "ignored other notebooks: final_version.ipynb"),
    ("ambiguous", "ambiguous", 0, "2 notebooks and none named ps02_attention.ipynb"),
    ("notes.txt", "notes.txt", 0, "not a notebook"),
    ("link_to_solution.ipynb", "link_to_solution", 0, "a symbolic link, not a submission: not followed"),
])
def test_every_entry_of_the_folder_gets_a_row_with_its_id_mapping(ps02, entry, student, score, status):
    row = ps02.by_student[student]
    assert row["submitted_as"] == entry and float(row["score"]) == score and status in row["status"], row


@pytest.mark.parametrize("entry", sorted(RAW))
def test_an_unreadable_submission_scores_zero_with_the_reason(ps02, entry):
    row = next(r for r in ps02.rows if r["submitted_as"] == entry.split("/")[0])
    assert float(row["score"]) == 0 and row["status"].startswith(RAW[entry][1]), row["status"]
    assert not (ps02.out / "feedback" / row["student_id"]).exists()


def test_output_to_stderr_is_shown_in_the_feedback_not_penalised(ps02):
    text = html.unescape(ps02.feedback_path("writes_stderr").read_text(encoding="utf-8"))
    assert "your code printed:" in text and "debugging attention_scores" in text


def test_a_missing_function_and_an_endless_loop_are_explained_in_the_feedback(ps02):
    missing = html.unescape(ps02.feedback_path("function_renamed").read_text(encoding="utf-8"))
    assert "`attention` is not defined" in missing
    loop = ps02.feedback_path("loops_for_long_inputs").read_text(encoding="utf-8")
    assert f"stopped after {CHECK_TIMEOUT} s" in loop and "not run: an earlier check ran out of time" in loop


def test_nothing_is_silently_ignored(ps02):
    listed = {r["submitted_as"] for r in ps02.rows}
    on_disk = {p.name for p in (ps02.out.parent / "submissions").iterdir()}
    assert listed == on_disk


def test_no_feedback_leaks_hidden_checks_solutions_or_other_students(ps02):
    for student in ps02.by_student:
        path = ps02.feedback_path(student)
        if not path.is_file():
            continue
        text = html.unescape(path.read_text(encoding="utf-8"))
        assert HIDDEN_MARKER not in text, student
        if student != "victim":
            assert VICTIM_MARKER not in text, student
        if student not in ("solution", "two_notebooks"):
            assert "BEGIN SOLUTION" not in text, student
        assert not re.search(r"mt-grade-[a-z0-9_]{4}", text), student  # no path of the grader's course


def test_snooping_found_nothing_of_the_course(ps02):
    text = html.unescape(ps02.feedback_path("snoops").read_text(encoding="utf-8"))
    printed = text.split("your cell printed while loading:")[1].split("\n")[0]
    assert "snooped" in printed  # the student's own output is shown, capped
    for secret in ("solutions/ps02", "tests/hidden/ps02", "gradebook", HIDDEN_MARKER, "BEGIN SOLUTION"):
        assert secret not in printed, printed


def test_course_files_and_package_are_unchanged(ps02):
    assert ps02.fingerprint_unchanged
    assert "tampered" not in (ROOT / "src" / "mastering_transformers" / "__init__.py").read_text()
    assert not (ROOT / "gradebook.db").exists()


def test_no_process_of_a_student_survives_the_run(ps02):
    survivors = subprocess.run(["pgrep", "-f", ZOMBIE_MARKER], capture_output=True, text=True).stdout.split()
    assert survivors == []


def test_output_is_capped_in_the_feedback(ps02):
    assert ps02.feedback_path("huge_output").stat().st_size < 2_000_000


@pytest.mark.parametrize("student, function, message", [
    ("alarm_cancelled", "causal_mask", f"stopped after {CHECK_TIMEOUT} s"),
    ("c_level_loop", "attention_scores", f"stopped after {CHECK_TIMEOUT} s"),
    ("os_exit_in_call", "causal_mask", "ended the grading process"),
    ("sys_exit_in_call", "attention", "raised SystemExit"),
    ("huge_allocation", "attention", "raised RuntimeError"),
    ("unsendable_result", "attention_scores", "returned something that cannot be graded"),
    ("mutates_input", "stable_softmax", "changed its input in place"),
    ("forbidden_api", "stable_softmax", "rule broken: your answer uses torch.softmax"),
    ("forbidden_dynamic", "stable_softmax", "torch.softmax is not allowed in this exercise"),
    ("network", "causal_mask", "ConnectionRefusedError"),
    ("tensor_subclass", "attention", "got"),
])
def test_each_fault_is_explained_in_the_feedback_of_its_function(ps02, student, function, message):
    text = html.unescape(re.sub(r"<[^>]+>", "", ps02.feedback_path(student).read_text(encoding="utf-8")))
    section = text.split(f"Hidden checks for {function}:")[1].split(" points")[0]
    assert message in section, section[:2000]


def test_scores_agree_with_nbgrader_export_and_gradebook(ps02):
    import csv

    with (ps02.out / "nbgrader_export.csv").open(newline="") as f:
        exported = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    graded = {r["student_id"] for r in ps02.rows if r["status"].startswith("graded")}
    assert graded <= set(exported)
    assert all(exported[s] == ps02.score(s) for s in graded)


# ---------------------------------------------------------------------------------------------------
# ps05: functions that take functions (callbacks into the trusted side)
# ---------------------------------------------------------------------------------------------------

CALLBACK_FLOOD = """
def pre_ln_block(x, attn, mlp, norm1, norm2):
    for _ in range(10**9):
        norm1(x)
"""

CALLBACK_KEPT = """
_saved = {}

def pre_ln_block(x, attn, mlp, norm1, norm2):
    _saved["attn"] = attn
    x = x + attn(norm1(x))
    return x + mlp(norm2(x))

def post_ln_block(x, attn, mlp, norm1, norm2):
    attn = _saved.get("attn", attn)  # a function from an earlier call: no longer valid
    x = norm1(x + attn(x))
    return norm2(x + mlp(x))
"""

CALLBACK_BAD_ARGUMENT = """
def post_ln_block(x, attn, mlp, norm1, norm2):
    class Sneaky:
        pass
    return norm1(Sneaky())
"""

READS_PROC_LAYER_NORM = """
def layer_norm(x, weight, bias, eps=1e-5):
    import os
    print(open("/proc/self/status").read()[:50])
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
"""


def _ps05_cases() -> dict:
    a = PS05
    callbacks_kept = filled(a, pre_ln_block=CALLBACK_KEPT.split("def post_ln_block")[0],
                            post_ln_block="def post_ln_block" + CALLBACK_KEPT.split("def post_ln_block")[1])
    return {
        "solution": (a.solution(), 22, "graded"),
        "callback_flood": (filled(a, pre_ln_block=CALLBACK_FLOOD), 18, "graded"),
        "callback_kept": (callbacks_kept, 18, "graded"),
        "callback_bad_argument": (filled(a, post_ln_block=CALLBACK_BAD_ARGUMENT), 18, "graded"),
        "forbidden_module": (filled(a, rms_norm="def rms_norm(x, weight, eps=1e-6):\n"
                                                "    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)"),
                             15, "graded"),
        "reads_proc": (filled(a, layer_norm=READS_PROC_LAYER_NORM), 22, "graded"),
    }


@pytest.fixture(scope="module")
def ps05(tmp_path_factory):
    cases = _ps05_cases()
    graded = grade(PS05, {k: v[0] for k, v in cases.items()}, tmp_path_factory.mktemp("ps05_hostile"),
                   check_timeout=CHECK_TIMEOUT)
    graded.cases = cases
    return graded


@pytest.mark.parametrize("student", sorted(_ps05_cases()))
def test_ps05_hostile_submission_gets_its_exact_grade(ps05, student):
    _, score, status = ps05.cases[student]
    row = ps05.by_student[student]
    assert ps05.score(student) == score and status in row["status"], (row["status"], row["details"])


# ---------------------------------------------------------------------------------------------------
# ps03: rules, and answers that try to compute through forbidden APIs
# ---------------------------------------------------------------------------------------------------

JACOBIAN_BY_AUTOGRAD = """
def softmax_jacobian(p):
    return torch.autograd.functional.jacobian(lambda z: z, p)
"""

LOGSUMEXP_BY_EVAL = """
def logsumexp(x, dim=-1):
    return eval("torch.logsum" + "exp")(x, dim)
"""

PATCHES_REFERENCE_NAMES = """
import torch
torch.logsumexp = lambda x, dim=-1: x.sum(dim)  # the trusted references are not in this process
def attention_entropy(w, dim=-1):
    return torch.zeros(w.shape[:-1])
"""


def _ps03_cases() -> dict:
    a = PS03
    return {
        "solution": (a.solution(), 25, "graded"),
        "jacobian_by_autograd": (filled(a, softmax_jacobian=JACOBIAN_BY_AUTOGRAD), 21, "graded"),
        "logsumexp_by_eval": (filled(a, logsumexp=LOGSUMEXP_BY_EVAL), 19, "graded"),
        "patches_reference_names": (filled(a, attention_entropy=PATCHES_REFERENCE_NAMES), 21, "graded"),
    }


@pytest.fixture(scope="module")
def ps03(tmp_path_factory):
    cases = _ps03_cases()
    graded = grade(PS03, {k: v[0] for k, v in cases.items()}, tmp_path_factory.mktemp("ps03_hostile"),
                   check_timeout=CHECK_TIMEOUT)
    graded.cases = cases
    return graded


@pytest.mark.parametrize("student", sorted(_ps03_cases()))
def test_ps03_hostile_submission_gets_its_exact_grade(ps03, student):
    _, score, status = ps03.cases[student]
    row = ps03.by_student[student]
    assert ps03.score(student) == score and status in row["status"], (row["status"], row["details"])


# ---------------------------------------------------------------------------------------------------
# Course errors: never a silent 0
# ---------------------------------------------------------------------------------------------------


def _course_copy(tmp, break_it) -> os.PathLike:
    import shutil

    course = tmp / "course"
    (course / "tests").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / PS02.name, course / "solutions" / PS02.name)
    shutil.copytree(ROOT / "tests" / "hidden" / "ps02", course / "tests" / "hidden" / "ps02")
    break_it(course / "tests" / "hidden" / "ps02")
    return course


@pytest.mark.parametrize("breakage, message", [
    (lambda d: (d / "test_causal_mask.py").unlink(), "missing hidden-check file"),
    (lambda d: (d / "test_attention.py").write_text(
        (d / "test_attention.py").read_text().replace("def _reference_causal_mask(t):\n",
                                                      "def _reference_causal_mask(t):\n    raise KeyError('oops')\n")),
     "fails its own hidden checks"),
])
def test_a_broken_course_grades_nobody_and_says_why(tmp_path, breakage, message):
    import csv
    import sys

    course = _course_copy(tmp_path, breakage)
    subs, out = tmp_path / "subs", tmp_path / "out"
    (subs / "alice").mkdir(parents=True)
    nbformat.write(PS02.filled_exercise(), subs / "alice" / f"{PS02.name}.ipynb")
    proc = subprocess.run([sys.executable, "-m", "mastering_transformers.grading", "grade", "--submissions",
                           str(subs), "--out", str(out), "--assignment", PS02.name, "--course", str(course)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 3 and message in proc.stderr, proc.stderr[-2000:]
    with (out / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["student_id"] for r in rows] == ["alice"]
    assert rows[0]["score"] == "" and "course error" in rows[0]["status"] and message in rows[0]["status"]


def _run_cli(subs, out, *extra, env=None):
    import sys

    return subprocess.run([sys.executable, "-m", "mastering_transformers.grading", "grade", "--submissions",
                           str(subs), "--out", str(out), "--assignment", PS02.name, *extra],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def test_without_bubblewrap_grading_refuses_unless_told_and_then_says_so(tmp_path):
    import csv
    import sys

    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    nbformat.write(PS02.filled_exercise(), subs / "alice" / f"{PS02.name}.ipynb")
    env = {**os.environ, "PATH": str(os.path.dirname(sys.executable))}  # no /usr/bin: no bwrap
    refused = _run_cli(subs, tmp_path / "refused", env=env)
    assert refused.returncode == 3 and "bubblewrap (bwrap) is not installed" in refused.stderr
    unsafe = _run_cli(subs, tmp_path / "unsafe", "--unsafe-no-sandbox", env=env)
    assert unsafe.returncode == 0, unsafe.stderr[-2000:]
    with (tmp_path / "unsafe" / "grades.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["score"]) == 14 and "WITHOUT SANDBOX (--unsafe-no-sandbox)" in row["status"]
