"""XOR masking of frame payloads (RFC 6455 section 5.3).

The pure-Python path never loops per byte in Python. Below 1 KiB it XORs
the payload with the repeated key as two big integers; from 1 KiB up it
copies the payload into a bytearray and, for each of the four key bytes,
takes every fourth byte (a strided slice), maps it through that key
byte's 256-byte XOR table with `translate` and assigns it back: about
870 MB/s for 1 MiB here, against 730 MB/s for the big integers in 64 KiB
chunks (bench/masking_methods.py compares the methods). When setup.py
could build the optional C extension `mod_pywebsocket._speedups` (it
needs a C compiler; the package works without it), that is used instead:
64-bit XOR at memory speed (about 27 GB/s for 1 MiB, 0.2 us for 32
bytes). Set MOD_PYWEBSOCKET_PURE_MASKING=1 to force the pure path.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Union

BytesLike = Union[bytes, bytearray, memoryview]

# From this size up, strided translate beats the big-integer XOR (which
# is faster for small payloads: no table setup, one allocation).
_TRANSLATE_MIN = 1024
_from_bytes = int.from_bytes
_tables: List[bytes] = []  # _tables[k]: bytes(i ^ k for i in range(256))


def _xor_tables() -> List[bytes]:
    """The 256 XOR tables, built on first use (about 0.3 ms)."""
    if not _tables:
        identity = _from_bytes(bytes(range(256)), 'little')
        ones = _from_bytes(b'\x01' * 256, 'little')  # k * ones: k repeated
        _tables[:] = [
            (identity ^ k * ones).to_bytes(256, 'little') for k in range(256)
        ]
    return _tables


def mask_pure(data: BytesLike, key: bytes) -> bytes:
    """XOR `data` with the 4-byte `key` repeated, starting at key[0]."""
    n = len(data)
    if n < _TRANSLATE_MIN:
        if not n:
            return b''
        keys = (key * ((n >> 2) + 1))[:n]
        return (
            _from_bytes(data, 'little') ^ _from_bytes(keys, 'little')
        ).to_bytes(n, 'little')
    out = bytearray(data)
    tables = _tables or _xor_tables()
    out[0::4] = out[0::4].translate(tables[key[0]])
    out[1::4] = out[1::4].translate(tables[key[1]])
    out[2::4] = out[2::4].translate(tables[key[2]])
    out[3::4] = out[3::4].translate(tables[key[3]])
    return bytes(out)


def _load_accelerator() -> Optional[Callable[[BytesLike, bytes], bytes]]:
    if os.environ.get('MOD_PYWEBSOCKET_PURE_MASKING'):
        return None
    try:
        from mod_pywebsocket._speedups import mask as mask_c
    except ImportError:
        return None
    accelerated: Callable[[BytesLike, bytes], bytes] = mask_c
    return accelerated


mask_accelerated = _load_accelerator()
mask: Callable[[BytesLike, bytes], bytes] = mask_accelerated or mask_pure
ACCELERATED = mask_accelerated is not None


class RepeatedXorMasker:
    """Masks a stream of chunks with one key, keeping the key's phase
    across calls (pywebsocket3's helper of the same name)."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._phase = 0

    def mask(self, data: BytesLike) -> bytes:
        key = self._key[self._phase :] + self._key[: self._phase]
        self._phase = (self._phase + len(data)) & 3
        return mask(data, key)
