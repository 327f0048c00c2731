#!/usr/bin/env python3
"""Echo client: a thin wrapper around mod_pywebsocket.client.

python example/echo_client.py                 # ws://127.0.0.1:8880/echo
python example/echo_client.py -m hello -m world
python example/echo_client.py ws://host:port/echo -v 76 -m hi
"""

import os
import sys

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
)

from mod_pywebsocket import client  # noqa: E402

if __name__ == '__main__':
    args = sys.argv[1:]
    if not args or args[0].startswith('-'):
        args = ['ws://127.0.0.1:8880/echo'] + args
    sys.exit(client.main(args))
