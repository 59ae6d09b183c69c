"""Shared pytest settings. tests/hidden/ holds the autograder's checks: they take a student's
function as argument and are run by mastering_transformers.grading, not collected here."""

collect_ignore = ["hidden"]
