"""``python -m mastering_transformers.grading grade ...``: see ``pipeline``."""

import sys

from .pipeline import main

sys.exit(main())
