"""Unit tests of the grading pieces, without nbgrader: the wire format, the sandbox, the trusted checker,
the rules scan and intake. The whole pipeline is tested in test_grading_hostile.py and
test_grading_assignments.py.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mastering_transformers.grading import check, wire
from mastering_transformers.grading.checker import (
    Cell,
    CheckTimeout,
    FunctionProxy,
    Program,
    Session,
    StudentCodeError,
    forbidden_uses,
    grade_program,
)
from mastering_transformers.grading.intake import discover, read_notebook, rebuild, safe_id
from mastering_transformers.grading.sandbox import SandboxConfig, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
CONFIG = SandboxConfig(uid=61090)  # a uid no parallel grading run uses


# ---------------------------------------------------------------------------------------------------
# wire: only plain data crosses
# ---------------------------------------------------------------------------------------------------


def _round_trip(value, register=None, make=None):
    tree, buffers = wire.encode(value, register)
    header, received = wire.unpack(wire.pack({"kind": "x", "v": tree}, buffers)[8:])
    return wire.decode(header["v"], received, make)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64,
                                   torch.int8, torch.uint8, torch.bool, torch.complex64])
def test_tensors_of_every_dtype_and_shape_round_trip_exactly(dtype):
    g = torch.Generator().manual_seed(0)
    for shape in [(), (0,), (3,), (2, 1, 4), (1, 1)]:
        x = (torch.randn(shape, generator=g) * 10).to(dtype)
        y = _round_trip(x)
        assert type(y) is torch.Tensor and y.dtype == dtype and y.shape == x.shape and torch.equal(y, x)


def test_a_non_contiguous_view_crosses_as_its_values():
    x = torch.arange(12.0).reshape(3, 4).t()[1:]
    assert torch.equal(_round_trip(x), x)


def test_nested_plain_values_round_trip():
    value = {"a": (1, 2.5, float("nan"), float("-inf"), None, True, "é"), 3: [np.arange(4, dtype=np.int32),
             2**70, complex(1, -2), b"\x00\xff"]}
    out = _round_trip(value)
    assert out["a"][:2] == (1, 2.5) and np.isnan(out["a"][2]) and out["a"][3] == float("-inf")
    assert out["a"][4:] == (None, True, "é") and out[3][1] == 2**70 and out[3][2] == complex(1, -2)
    assert out[3][0].dtype == np.int32 and out[3][0].tolist() == [0, 1, 2, 3] and out[3][3] == b"\x00\xff"


def test_a_tensor_subclass_arrives_as_a_plain_tensor():
    class Liar(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return torch.tensor(0.0)

    y = _round_trip(torch.ones(3).as_subclass(Liar))
    assert type(y) is torch.Tensor and y.tolist() == [1.0, 1.0, 1.0]


def test_subclasses_of_builtins_arrive_as_builtins():
    class Sneaky(float):
        def __eq__(self, other):
            return True

    out = _round_trip((Sneaky(2.0), True))
    assert type(out[0]) is float and out[0] != 3.0


def test_objects_and_callables_do_not_cross_unless_registered():
    class Anything:
        pass

    with pytest.raises(wire.WireError, match="Anything cannot be graded"):
        wire.encode(Anything())
    with pytest.raises(wire.WireError):
        wire.encode(lambda: 1)
    calls = []
    out = _round_trip({"f": len}, register=lambda fn: 7, make=lambda handle: calls.append(handle) or handle)
    assert out == {"f": 7} and calls == [7]


@pytest.mark.parametrize("tree, buffers", [
    ({"$": "pickle", "data": "x"}, []),
    ({"$": "tensor", "dtype": "object", "shape": [1], "buf": 0}, [b"\x00" * 8]),
    ({"$": "tensor", "dtype": "float32", "shape": [3], "buf": 0}, [b"\x00" * 8]),
    ({"$": "tensor", "dtype": "float32", "shape": [-1], "buf": 0}, [b""]),
    ({"$": "ndarray", "dtype": "|O", "shape": [1], "buf": 0}, [b"\x00" * 8]),
    ({"$": "tensor", "dtype": "float32", "shape": [1], "buf": 5}, [b"\x00" * 4]),
    ({"$": "callback", "id": 1}, []),
    ({"$": "dict", "items": [[[1], 2]]}, []),
])
def test_malformed_values_are_refused(tree, buffers):
    with pytest.raises(wire.WireError):
        wire.decode(tree, buffers)


def test_too_deep_values_are_refused():
    value = []
    for _ in range(wire.MAX_DEPTH + 2):
        value = [value]
    with pytest.raises(wire.WireError, match="too deeply"):
        wire.encode(value)


# ---------------------------------------------------------------------------------------------------
# the rules scan
# ---------------------------------------------------------------------------------------------------

FORBIDDEN = {"torch.softmax": "x", "torch.nn.functional.softmax": "x", "torch.Tensor.softmax": "x",
             "torch.logsumexp": "x", "mastering_transformers": "x", "torch.autograd": "x"}


@pytest.mark.parametrize("source, found", [
    ("def f(x):\n    return torch.softmax(x, -1)", ["torch.softmax"]),
    ("def f(x):\n    return F.softmax(x, -1)", ["torch.nn.functional.softmax"]),
    ("from torch.nn import functional as G\ndef f(x):\n    return G.softmax(x, -1)", ["torch.nn.functional.softmax"]),
    ("def f(x):\n    return x.softmax(-1)", ["torch.Tensor.softmax"]),
    ("from torch import logsumexp as lse\ndef f(x):\n    return lse(x, 0)", ["torch.logsumexp"]),
    ("def f(x):\n    return getattr(torch, 'softmax')(x, 0)", ["torch.Tensor.softmax"]),
    ("import mastering_transformers as mt\ndef f(x):\n    return mt.gelu(x)", ["mastering_transformers"]),
    ("def f(x):\n    return torch.autograd.functional.jacobian(g, x)", ["torch.autograd"]),
    ("def logsumexp(x):\n    return x.exp().sum().log()\ndef f(x):\n    return logsumexp(x)", []),
    ("def f(x):\n    e = (x - x.amax(-1, keepdim=True)).exp()\n    return e / e.sum(-1, keepdim=True)", []),
])
def test_forbidden_apis_are_found_through_aliases_methods_and_strings(source, found):
    context = ["import torch\nimport torch.nn.functional as F"]
    assert forbidden_uses(source, context, FORBIDDEN) == found


# ---------------------------------------------------------------------------------------------------
# intake
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [("alice", "alice"), ("José Müller", "Jose_Muller"),
                                            (".hidden", "hidden"), ("../../etc", "etc"), ("日本", "student")])
def test_student_ids_are_safe(name, expected):
    assert safe_id(name) == expected


def test_duplicate_safe_ids_get_a_suffix(tmp_path):
    for name in ("José", "Jose", "jose"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert sorted(s.student for s in discover(tmp_path, "ps02_attention")) == ["Jose", "Jose_3", "jose_2"]


def test_rebuild_takes_only_the_answers_from_the_submission():
    released = nbformat.read(ROOT / "exercises" / "ps02_attention" / "ps02_attention.ipynb", as_version=4)
    submitted = nbformat.read(ROOT / "exercises" / "ps02_attention" / "ps02_attention.ipynb", as_version=4)
    for c in submitted.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "causal_mask":
            c.source = "def causal_mask(T):\n    return 'mine'"
        elif meta.get("grade"):
            c.source = "print(14)"  # an edited locked cell
    submitted.cells.append(nbformat.v4.new_code_cell("x = 1"))
    nb, notes = rebuild(submitted, released)
    sources = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in nb.cells}
    assert sources["causal_mask"] == "def causal_mask(T):\n    return 'mine'"
    assert sources["test_causal_mask"] == next(c.source for c in released.cells
                                               if c.metadata.get("nbgrader", {}).get("grade_id") == "test_causal_mask")
    assert len(nb.cells) == len(released.cells)
    assert any("was edited" in n for n in notes) and any("not graded" in n for n in notes)


def test_a_bom_and_an_old_nbformat_are_read(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "a.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + nbformat.writes(nbformat.convert(nb, 3), version=3).encode())
    read, version = read_notebook(path)
    assert version == 3 and read.nbformat == 4 and read.cells[0].source == "x = 1"


# ---------------------------------------------------------------------------------------------------
# the sandbox
# ---------------------------------------------------------------------------------------------------

PROBE = f"""
import os, socket, resource
facts = {{"uid": os.getuid(), "environ": sorted(os.environ), "root_listing": sorted(os.listdir("/"))}}
for path in [{str(ROOT / "tests")!r}, {str(ROOT / "solutions")!r}, {str(ROOT / "nbgrader_config.py")!r}, "/home",
             "/etc/passwd"]:
    facts[path] = os.path.exists(path)
try:
    socket.create_connection(("1.1.1.1", 80), timeout=1)
    facts["network"] = True
except OSError:
    facts["network"] = False
try:
    import mastering_transformers
    open(mastering_transformers.__file__, "a").write("#")
    facts["package_writable"] = True
except OSError:
    facts["package_writable"] = False
try:
    big = bytearray(3 * 2**30)
    facts["allocated_3gb"] = True
except MemoryError:
    facts["allocated_3gb"] = False
facts["nproc"] = resource.getrlimit(resource.RLIMIT_NPROC)[0]
"""


def _worker_facts(config: SandboxConfig) -> dict:
    session = Session([Cell(PROBE, "probe"), Cell("import json\ndef facts_json():\n    return json.dumps(facts)", "f")],
                      config, {})
    try:
        proxy = FunctionProxy(session, "facts_json", {}, time.monotonic() + 30)
        return json.loads(proxy())
    finally:
        session.close()


def test_the_worker_sees_nothing_of_the_course_and_cannot_leave():
    facts = _worker_facts(CONFIG)
    assert facts["uid"] != 0
    assert not any(facts[str(ROOT / p)] for p in ("tests", "solutions", "nbgrader_config.py"))
    assert not facts["/home"] and not facts["/etc/passwd"]
    assert not facts["network"] and not facts["package_writable"] and not facts["allocated_3gb"]
    assert set(facts["environ"]) <= {"HOME", "PATH", "MPLBACKEND", "OMP_NUM_THREADS", "PYTHONDONTWRITEBYTECODE",
                                     "PYTHONHASHSEED", "LANG", "LC_CTYPE", "PWD"}


def test_killing_the_worker_leaves_no_process_behind():
    marker = f"mt-unit-{time.time_ns()}"
    code = (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # {marker}'],"
            " start_new_session=True)\ndef f():\n    return 1")
    session = Session([Cell(code, "f")], CONFIG, {})
    session.ensure()
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout.strip()
    session.close()
    time.sleep(0.5)
    assert not subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout.strip()


# ---------------------------------------------------------------------------------------------------
# the trusted checker
# ---------------------------------------------------------------------------------------------------

DEMO_CHECKS = {
    "double": '''
from mastering_transformers.grading import check

@check(points=1)
def test_small(double):
    """doubles 2"""
    assert double(2) == 4, f"double(2) must be 4; got {double(2)}"

@check(points=2)
def test_tensor(double):
    """doubles a tensor"""
    import torch
    x = torch.arange(3.0)
    assert torch.equal(double(x), 2 * x), "double(x) must be 2 x"
''',
    "quadruple": '''
from mastering_transformers.grading import check

ISOLATE = {"double": lambda x: 2 * x}

@check(points=1)
def test_four(quadruple):
    """quadruples 3 (with the reference double)"""
    assert quadruple(3) == 12, f"quadruple(3) must be 12; got {quadruple(3)}"
''',
    "square": '''
from mastering_transformers.grading import check
import torch

@check(points=1)
def test_gradient(square):
    """d(x^2)/dx = 2x, from the worker's autograd"""
    x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    out, (grad,) = square.vjp((x,), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(out, x**2) and torch.allclose(grad, 2 * x), f"got {out}, {grad}"

@check(points=1)
def test_again(square):
    """runs after an earlier check"""
    assert square(2.0) == 4.0
''',
}


@pytest.fixture
def demo(tmp_path):
    root = tmp_path / "hidden"
    (root / "ps99").mkdir(parents=True)
    for name, source in DEMO_CHECKS.items():
        (root / "ps99" / f"test_{name}.py").write_text(textwrap.dedent(source))

    def run(source: str, functions=("double", "quadruple", "square"), check_timeout=3.0, load_timeout=5.0):
        cells = [Cell("import torch")] + [Cell(source, f) for f in functions[:1]]
        reports = grade_program(Program(cells, list(functions)), "ps99_demo", root, CONFIG, check_timeout,
                                load_timeout)
        return {r.name: r for r in reports}

    return run


GOOD = """
def double(x):
    return 2 * x

def quadruple(x):
    return double(double(x))

def square(x):
    return x * x
"""


def test_a_correct_program_earns_every_point_with_a_gradient_from_the_worker(demo):
    reports = demo(GOOD)
    assert {n: r.earned for n, r in reports.items()} == {"double": 3, "quadruple": 1, "square": 2}


def test_isolate_calls_the_reference_for_the_students_helper(demo):
    reports = demo(GOOD.replace("return 2 * x", "return 3 * x"))
    assert reports["double"].earned == 0 and reports["quadruple"].earned == 1


def test_a_detached_result_cannot_give_a_gradient(demo):
    reports = demo(GOOD.replace("return x * x", "return (x * x).detach() if hasattr(x, 'detach') else x * x"))
    result = reports["square"].results[0]
    assert result.earned == 0 and "does not depend differentiably" in result.message
    assert reports["square"].results[1].earned == 1


def test_a_hang_costs_its_function_and_the_next_function_runs_in_a_new_worker(demo):
    reports = demo(GOOD.replace("def quadruple(x):\n", "def quadruple(x):\n    while True:\n        pass\n"))
    assert reports["double"].earned == 3 and reports["square"].earned == 2
    assert "stopped after 3 s" in reports["quadruple"].results[0].message


def test_a_crash_while_loading_skips_only_the_rest_of_its_statement(demo):
    reports = demo(GOOD + "\nimport os\nos._exit(5)\n")
    assert sum(r.earned for r in reports.values()) == 6
    assert "exited with status 5" in reports["double"].notes[0]


def test_an_in_place_change_of_an_input_is_a_failure(demo):
    reports = demo(GOOD.replace("def double(x):\n    return 2 * x",
                                "def double(x):\n    if hasattr(x, 'mul_'):\n        return x.mul_(2)\n    return 2 * x"))
    assert reports["double"].results[1].earned == 0 and "in place" in reports["double"].results[1].message


def test_a_proxy_call_past_its_deadline_raises_check_timeout():
    session = Session([Cell("def slow():\n    while True:\n        pass", "slow")], CONFIG, {})
    try:
        with pytest.raises(CheckTimeout):
            FunctionProxy(session, "slow", {}, time.monotonic() + 1)()
        assert not session.worker.alive
    finally:
        session.close()


def test_a_student_exception_becomes_a_message_naming_the_call():
    session = Session([Cell("def f(x):\n    raise ValueError('bad ' + str(x))", "f")], CONFIG, {})
    try:
        with pytest.raises(StudentCodeError, match=r"f\(tensor\(2,\)\) raised ValueError: bad"):
            FunctionProxy(session, "f", {}, time.monotonic() + 10)(torch.zeros(2))
    finally:
        session.close()


def test_check_needs_positive_points():
    with pytest.raises(ValueError):
        check(points=0)
