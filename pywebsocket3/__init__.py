"""pywebsocket3: the import name of pywebsocket3 4.x, served by
mod_pywebsocket.

Every module here is an alias: ``pywebsocket3.msgutil`` *is*
``mod_pywebsocket.msgutil`` (the same module object, so state and classes
are shared and ``isinstance`` checks agree), ``pywebsocket3.handshake.base``
is ``mod_pywebsocket.handshake.base`` and so on. The modules pywebsocket3
has and mod_pywebsocket does not name alike map to where their public
names live: ``_stream_exceptions`` → ``common``; ``request_handler``,
``server_util`` and ``websocket_server`` → ``standalone``. One module is
its own: ``pywebsocket3.dispatch`` looks every name up in
mod_pywebsocket.dispatch except ``Dispatcher``, which keeps pywebsocket3's
rule that handler files define ``web_socket_do_extra_handshake``.

``python -m pywebsocket3.standalone`` runs mod_pywebsocket's standalone
server, which accepts pywebsocket3's command-line flags.

This package has exactly the files of pywebsocket3 4.0.2's package, so
installing either distribution over the other leaves one whole package;
see docs/migrating-from-pywebsocket3.md ("Both installed").
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__version__ = '4.0.2'  # the pywebsocket3 release this stands in for

IS_MOD_PYWEBSOCKET_ALIAS = True


def _alias(name: str, target: str) -> ModuleType:
    """Make module `name` the module `target`: in sys.modules, as the
    attribute of its parent package, and, for a package, every submodule
    of `target` already imported under the matching `name.` prefix (so
    ``import pywebsocket3.handshake.base`` never loads a second copy)."""
    module = importlib.import_module(target)
    sys.modules[name] = module
    prefix = target + '.'
    for loaded, submodule in list(sys.modules.items()):
        if loaded.startswith(prefix):
            sys.modules[name + loaded[len(target) :]] = submodule
    parent, _, child = name.rpartition('.')
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module
