"""The one error that stops grading for everybody: the course's side is broken, not a student's."""


class CourseError(RuntimeError):
    """Missing or failing hidden checks, no sandbox, a changed check file: stop, grade nobody, say why."""
