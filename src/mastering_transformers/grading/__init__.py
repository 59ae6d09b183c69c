"""Autograding the course's nbgrader exercises, safely: student code in a sandbox, checks outside it.

One file per job:

- ``wire``: the plain data that may cross between the two processes, and how it is framed.
- ``worker``: the sandboxed process that runs a student's cells and calls their functions.
- ``sandbox``: starting the worker under bubblewrap with resource limits, talking to it, killing it.
- ``checker``: the trusted side: hidden checks, the proxy they call, per-function results, rules.
- ``kit``: helpers the hidden-check files share (errors against references, recorders, tensor checks).
- ``intake``: every file of a submissions folder, a student id for each, notebooks rebuilt from the release.
- ``nbgrader_plugin``: nbgrader's autograde with ``TrustedChecks`` in place of executing the notebook.
- ``pipeline``: the ``grade`` command: intake, nbgrader's commands, grades.csv, feedback, export.

A hidden-check file imports ``check`` from here: ``from mastering_transformers.grading import check``.
"""

from .checker import CheckResult, CourseError, StudentCodeError, check, check_name, load_checks

__all__ = ["CheckResult", "CourseError", "StudentCodeError", "check", "check_name", "load_checks"]
