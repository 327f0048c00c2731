"""Sphinx configuration: `make docs` builds docs/_build/html with warnings
as errors. Pages are Markdown (MyST); the API reference comes from the
docstrings (autodoc); the option tables from mod_pywebsocket/options.py."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import mod_pywebsocket  # noqa: E402
from mod_pywebsocket import options  # noqa: E402

project = 'mod_pywebsocket'
copyright = 'the mod_pywebsocket authors'
release = version = mod_pywebsocket.__version__
extensions = ['myst_parser', 'sphinx.ext.autodoc']
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
exclude_patterns = ['_build', '_generated/README']
myst_heading_anchors = 3
autodoc_member_order = 'bysource'
autodoc_typehints = 'none'
html_theme = 'alabaster'
nitpicky = False
# The Apache guide is the README's section (its ### headings under this
# page's #), and README links to its own sections.
suppress_warnings = ['myst.header', 'myst.xref_missing']


def _write_option_tables(app):
    """docs/_generated/options-*.md from the option table."""
    out = os.path.join(app.srcdir, '_generated')
    os.makedirs(out, exist_ok=True)
    for host in ('standalone', 'apache'):
        path = os.path.join(out, 'options-%s.md' % host)
        text = options.reference_markdown(host)
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)


def setup(app):
    app.connect('builder-inited', _write_option_tables)
