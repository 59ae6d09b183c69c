"""Small Sphinx fixes for the rendered book, found by the page tests (tests/test_book_pages.py).

- jupyter-book 1.0.4 registers sphinx-thebe's and sphinx-togglebutton's inline scripts twice, and the
  second `const THEBE_JS_URL = ...` is a JavaScript error on every page: drop exact duplicates
  (an inline script's filename is None in one copy and "" in the other).
- the theme's default colour mode renders empty: give it one.
"""


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        key = (getattr(script, "filename", str(script)) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique  # in place: it is the builder's own list, which later handlers append to


def _default_theme_mode(app, pagename, templatename, context, doctree):
    # sphinx-book-theme 1.3 with pydata-sphinx-theme 0.17 renders an empty default mode, which the
    # theme's script reports as a console error on a reader's first visit.
    if not context.get("default_mode"):
        context["default_mode"] = "light"


def setup(app):
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    app.connect("html-page-context", _default_theme_mode, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
