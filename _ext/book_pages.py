"""Sphinx extension for the book's pages (``sphinx.local_extensions`` in _config.yml).

* sphinx-thebe's inline configuration (``const THEBE_JS_URL = ...``) and
  sphinx-togglebutton's reach every page twice, once with the filename None and once
  with "", which Sphinx does not see as the same script; the second ``const`` is a
  SyntaxError in the console. Each script is kept once.
* pydata-sphinx-theme reads the light/dark mode from the reader's storage or, on a
  first visit, from ``default_mode`` (an ``html_context`` value); left unset, every
  first visit logs "Got invalid theme mode" as an error. It is set to what the theme
  then falls back to, "auto".
* ``_ext/static`` is served with the book: ``book.css`` on every page (code and outputs
  that fit the column), ``widgets-setup.js`` on pages with widgets (see its header).
"""

from __future__ import annotations

from pathlib import Path


def _unique_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        # an inline script's filename is None or "" depending on who added it
        key = (script.filename or None, script.priority, *sorted(script.attributes.items()))
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def _theme_mode(app, config) -> None:
    config.html_context.setdefault("default_mode", "auto")


def setup(app):
    app.connect("config-inited", _theme_mode)
    app.config.html_static_path.append(str(Path(__file__).parent / "static"))
    app.add_css_file("book.css")
    app.connect("html-page-context", _unique_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
