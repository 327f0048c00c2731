"""The optional C extension; everything else is in pyproject.toml.

`python3 setup.py build_ext --inplace` builds the extension in a checkout,
also with a setuptools too old to read pyproject.toml (before 77: Debian
12's, the Python Apache's mod_python runs)."""

import sys

import setuptools
from setuptools import Extension, setup

# Optional: without a C compiler the package runs in pure Python.
SPEEDUPS = Extension(
    'mod_pywebsocket._speedups',
    ['mod_pywebsocket/_speedups.c'],
    optional=True,
)


def _setuptools_reads_pyproject() -> bool:
    """Whether this setuptools understands pyproject.toml's PEP 639
    license fields (77 and later)."""
    try:
        return int(setuptools.__version__.split('.')[0]) >= 77
    except ValueError:
        return True


if sys.argv[1:2] == ['build_ext'] and not _setuptools_reads_pyproject():
    # Build the extension alone, without the project's metadata.
    dist = setuptools.Distribution({'ext_modules': [SPEEDUPS]})
    dist.script_name = 'setup.py'
    dist.script_args = sys.argv[1:]
    dist.parse_command_line()
    dist.run_commands()
else:
    setup(ext_modules=[SPEEDUPS])
