"""`python -m mod_pywebsocket --version | --info`; the servers are
`python -m mod_pywebsocket.standalone` and `python -m
mod_pywebsocket.client`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

import mod_pywebsocket
from mod_pywebsocket.info import info_lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m mod_pywebsocket',
        description='WebSocket handlers for Apache (mod_python) and a '
        'standalone server. Run the server with python -m '
        'mod_pywebsocket.standalone, the client with python -m '
        'mod_pywebsocket.client.',
    )
    parser.add_argument(
        '--version',
        action='version',
        version='mod_pywebsocket %s' % mod_pywebsocket.__version__,
    )
    parser.add_argument(
        '--info',
        action='store_true',
        help='print versions, the masking path (C speedup '
        'or pure Python) and the deflate defaults',
    )
    args = parser.parse_args(argv)
    if not args.info:
        parser.print_help()
        return 0
    print('\n'.join(info_lines()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
