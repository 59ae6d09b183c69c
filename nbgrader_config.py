"""nbgrader configuration: solutions/ is the source, exercises/ the release (see README, Instructors)."""

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

# Student notebooks are checked against the hidden tests; the visible tests stay in the release.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearHiddenTests.begin_test_delimeter = "BEGIN HIDDEN TESTS"
c.ClearHiddenTests.end_test_delimeter = "END HIDDEN TESTS"

# A cell that runs forever is interrupted after this many seconds and scored as an error.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True

# A student who deletes a test cell gets it back at autograde (nbgrader's default scores it as missing).
c.OverwriteCells.add_missing_cells = True
