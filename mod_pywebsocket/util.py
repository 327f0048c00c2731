"""Small helpers that handlers written for pywebsocket3 (for example those
of web-platform-tests) import from `mod_pywebsocket.util`."""

from __future__ import annotations

import logging
import traceback

from mod_pywebsocket.masking import RepeatedXorMasker  # noqa: F401


def pack_byte(value: int) -> bytes:
    """One byte from an int 0-255."""
    return bytes((value,))


def unpack_byte(data: bytes) -> int:
    """The int value of a 1-byte bytes object."""
    return data[0]


def hexify(data: bytes) -> str:
    """Space-separated hex of `data` (for logs)."""
    return ' '.join('%02x' % b for b in data)


def get_stack_trace() -> str:
    """The traceback of the exception being handled, as text."""
    return traceback.format_exc()


def prepend_message_to_exception(message: str, exc: BaseException) -> None:
    """Put `message` in front of an exception's text, in place."""
    exc.args = ((message + str(exc)),) + tuple(exc.args[1:])


def get_class_logger(obj: object) -> logging.Logger:
    """A logger named after the module and class of `obj`."""
    cls = type(obj)
    return logging.getLogger('%s.%s' % (cls.__module__, cls.__name__))


class NoopMasker:
    """A masker that leaves data as it is."""

    def mask(self, data: bytes) -> bytes:
        return bytes(data)
