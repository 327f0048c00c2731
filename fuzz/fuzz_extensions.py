"""Fuzz the Sec-WebSocket-Extensions parser and the permessage-deflate
negotiation (server side and our client's acceptance of an answer):
documented is ValueError (ExtensionParsingException is one)."""

from __future__ import annotations

import _common  # noqa: F401  (sys.path)
from mod_pywebsocket.extensions import accept_server_response, processors_for
from mod_pywebsocket.http_header_util import (
    format_extensions,
    parse_extensions,
)


def target(data: bytes) -> None:
    text = data.decode('iso-8859-1')
    try:
        offers = parse_extensions(text)
    except ValueError:
        return
    again = parse_extensions(format_extensions(offers))
    assert [o.name() for o in again] == [o.name() for o in offers]
    for processor in processors_for(offers):
        try:
            response = processor.get_extension_response()
        except ValueError:
            continue
        if response is not None:
            accept_server_response(response)
    for offer in offers:
        try:
            accept_server_response(offer)
        except ValueError:
            pass


if __name__ == '__main__':
    _common.run(target)
