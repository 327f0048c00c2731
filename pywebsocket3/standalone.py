"""pywebsocket3.standalone: the same module object as
mod_pywebsocket.standalone (see pywebsocket3/__init__.py).

Also runnable: ``python -m pywebsocket3.standalone`` or
``python path/to/pywebsocket3/standalone.py`` start the standalone server
with pywebsocket3's command line and its defaults where they differ
(mod_pywebsocket.standalone.PYWEBSOCKET3_DEFAULTS: --rsv-close-code 1003).
"""

if __name__ == '__main__':
    from mod_pywebsocket import standalone

    standalone.main(pywebsocket3=True)
else:
    from pywebsocket3 import _alias

    _alias(__name__, 'mod_pywebsocket.standalone')
