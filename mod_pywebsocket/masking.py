"""XOR masking of frame payloads (RFC 6455 section 5.3).

Three paths, the first available one is used (`PATH` names it):
- "C extension": `mod_pywebsocket._speedups`, built by setup.py where a
  C compiler is found; 64-bit XOR at memory speed (about 27 GB/s for
  1 MiB, 0.2 us for 32 bytes).
- "OpenSSL": no compiler needed; ctypes drives the libcrypto that the
  ssl module loads (masking_openssl.py), about 7 GB/s for 1 MiB. Below
  2 KiB the pure path is used, a ctypes call costing more.
- "pure Python": never loops per byte in Python. Below 1 KiB it XORs
  the payload with the repeated key as two big integers; from 1 KiB up
  it copies the payload into a bytearray and, for each of the four key
  bytes, takes every fourth byte (a strided slice), maps it through that
  key byte's 256-byte XOR table with `translate` and assigns it back:
  about 870 MB/s for 1 MiB here (bench/masking_methods.py compares the
  methods).
MOD_PYWEBSOCKET_MASKING=openssl skips the C extension (what a checkout
without the build runs); MOD_PYWEBSOCKET_MASKING=python (or the older
MOD_PYWEBSOCKET_PURE_MASKING=1) forces the pure path.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple, Union

BytesLike = Union[bytes, bytearray, memoryview]
MaskFunction = Callable[[BytesLike, bytes], bytes]
RangeMaskFunction = Callable[[bytes, int, int, bytes], bytes]

# From this size up, strided translate beats the big-integer XOR (which
# is faster for small payloads: no table setup, one allocation).
_TRANSLATE_MIN = 1024
# From this size up, the OpenSSL path beats the pure one.
_OPENSSL_MIN = 2048
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


def forced_path() -> str:
    """'auto', 'openssl' (skip the C extension) or 'python' (pure only),
    from MOD_PYWEBSOCKET_MASKING or the older MOD_PYWEBSOCKET_PURE_MASKING."""
    if os.environ.get('MOD_PYWEBSOCKET_PURE_MASKING'):
        return 'python'
    value = os.environ.get('MOD_PYWEBSOCKET_MASKING', 'auto').strip().lower()
    return value if value in ('openssl', 'python') else 'auto'


def _load_accelerator() -> Optional[MaskFunction]:
    if forced_path() != 'auto':
        return None
    try:
        from mod_pywebsocket._speedups import mask as mask_c
    except ImportError:
        return None
    accelerated: MaskFunction = mask_c
    return accelerated


def _load_openssl() -> Optional[Tuple[MaskFunction, RangeMaskFunction]]:
    if forced_path() == 'python':
        return None
    from mod_pywebsocket import masking_openssl

    return masking_openssl.load(mask_pure)


def _mask_through_openssl(data: BytesLike, key: bytes) -> bytes:
    """OpenSSL from _OPENSSL_MIN bytes up, the big integers below (a
    ctypes call costs more than they do on short payloads)."""
    if len(data) < _OPENSSL_MIN:
        return mask_pure(data, key)
    assert mask_openssl is not None
    return mask_openssl(data, key)


def _mask_range_through_openssl(
    data: bytes, start: int, end: int, key: bytes
) -> bytes:
    if end - start < _OPENSSL_MIN:
        return mask_pure(memoryview(data)[start:end], key)
    assert mask_range_openssl is not None
    return mask_range_openssl(data, start, end, key)


def _mask_range_through(function: MaskFunction) -> RangeMaskFunction:
    def mask_range(data: bytes, start: int, end: int, key: bytes) -> bytes:
        return function(memoryview(data)[start:end], key)

    return mask_range


mask_accelerated = _load_accelerator()
_openssl = None if mask_accelerated else _load_openssl()
mask_openssl, mask_range_openssl = _openssl or (None, None)
ACCELERATED = mask_accelerated is not None
mask: MaskFunction
# mask_range(data, start, end, key): data[start:end] masked, read where
# it lies (what the frame parser calls on received bytes).
mask_range: RangeMaskFunction
if mask_accelerated is not None:
    mask, PATH = mask_accelerated, 'C extension'
    from mod_pywebsocket import _speedups

    # (in C: no view or slice per frame; an extension built before it
    # had mask only)
    mask_range = getattr(_speedups, 'mask_range', None) or (
        _mask_range_through(mask_accelerated)
    )
elif _openssl is not None:
    mask, PATH = _mask_through_openssl, 'OpenSSL'
    mask_range = _mask_range_through_openssl
else:
    mask, PATH = mask_pure, 'pure Python'
    mask_range = _mask_range_through(mask_pure)


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
