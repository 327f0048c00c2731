"""The optional C extension; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    # Optional: without a C compiler the package runs in pure Python.
    ext_modules=[Extension('mod_pywebsocket._speedups',
                           ['mod_pywebsocket/_speedups.c'], optional=True)],
)
