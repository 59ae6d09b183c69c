"""nbgrader configuration: solutions/ is the source, exercises/ the release (see README, Instructors).

Autograding never executes a student's notebook in a kernel: ``TrustedChecks`` (mastering_transformers.
grading) runs the answer cells in a sandboxed worker and the hidden checks (tests/hidden/) in nbgrader's
own process, and ``SaveTrustedGrades`` records the checker's points in the gradebook.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader)

# The folder of this file, absolute: nbgrader reads the config from the working directory.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))  # noqa: F821 (__file__ set by traitlets)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# nbgrader's autograde, with the trusted checker in place of executing the notebook (and of reading
# scores from what the notebook displays). The other steps are nbgrader's own.
_plugin = "mastering_transformers.grading.nbgrader_plugin"
c.Autograde.autograde_preprocessors = [
    f"{_plugin}.TrustedChecks",
    "nbgrader.preprocessors.LimitOutput",
    f"{_plugin}.SaveTrustedGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.TrustedChecks.hidden_tests = os.path.join(c.CourseDirectory.root, "tests", "hidden")
c.TrustedChecks.check_timeout = 10  # seconds per hidden check
c.TrustedChecks.load_timeout = 30  # seconds per top-level statement of a student's cell

# `nbgrader validate` (the student's own check before submitting) executes the notebook as usual.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True

# A deleted locked cell is put back at autograde (nbgrader's default scores it as missing).
c.OverwriteCells.add_missing_cells = True
