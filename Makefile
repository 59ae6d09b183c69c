# Mastering Transformers: `make book` builds the book, `make test` runs every check.
# Both create .venv and install everything on a fresh machine (Python 3.11 and make are all they need).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# nbgrader calls alembic from PATH, so the venv's bin comes first for every recipe.
export PATH := $(BIN):$(PATH)
export PYTHONHASHSEED := 0
STAMP := $(VENV)/.installed-stamp
ASSIGNMENTS := $(notdir $(wildcard solutions/ps*))
SUBMISSIONS ?= submissions
GRADES ?= grading_output

.PHONY: install book test exercises grade chromium sandbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# The CPU build of torch, pinned exactly: a looser spec would pull the multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Every chapter executed once (two kernels at a time on two cores; a failed assert fails the build), then
# Jupyter Book renders the executed notebooks with --warningiserror.
book: $(STAMP)
	$(BIN)/python scripts/build_book.py
	@echo "The book is built: open file://$(CURDIR)/_build/html/index.html"

# Headless Chromium for the page tests, from Debian's package when it is missing (needs root).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium' for the page tests"; fi; }

# Bubblewrap, the sandbox student code runs in when it is graded (Debian's package; needs root to install).
sandbox:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "bubblewrap is missing: run 'sudo apt-get install bubblewrap' to grade (and for the grading tests)"; exit 1; fi; }

test: book chromium sandbox
	$(BIN)/python -m pytest -n auto --dist loadscope tests --nbval-lax solutions -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; fi; exit $$rc

# Regenerate the student versions in exercises/ from the nbgrader sources in solutions/.
# A throwaway gradebook: sqlite's :memory: would be a new, empty database at every connection.
exercises: $(STAMP)
	@db=$$(mktemp -d) && trap 'rm -rf "$$db"' EXIT && for a in $(ASSIGNMENTS); do \
	  nbgrader generate_assignment "$$a" --force --CourseDirectory.db_url="sqlite:///$$db/gradebook.db" --log-level=WARN || exit 1; \
	  echo "exercises/$$a/ regenerated from solutions/$$a/"; \
	done

# Autograde a folder of student notebooks with nbgrader, student code sandboxed:
# make grade SUBMISSIONS=dir ASSIGNMENT=psNN_topic [GRADES=out]
# writes $(GRADES)/grades.csv (one row per entry of the folder), feedback/<student>/ and logs/.
grade: $(STAMP) sandbox
	@test -n "$(ASSIGNMENT)" || { echo "make grade needs ASSIGNMENT=psNN_topic (one of: $(ASSIGNMENTS))" >&2; exit 2; }
	$(BIN)/python -m mastering_transformers.grading grade --submissions "$(SUBMISSIONS)" --out "$(GRADES)" --assignment "$(ASSIGNMENT)"

clean:
	rm -rf _build $(GRADES) submitted autograded feedback gradebook.db
