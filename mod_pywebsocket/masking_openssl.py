"""XOR masking through OpenSSL, for installs without the C extension.

No compiler is needed: ctypes calls `CRYPTO_ofb128_encrypt` in the
libcrypto that Python's own ssl module already loaded. OFB mode XORs the
data with a keystream and renews the keystream's 16 bytes after each
block by calling a block cipher as `block(state, state, key)`. Here the
"cipher" is libc's `labs`, which only reads its first argument and
returns: the state is never changed, so the keystream is the state
repeated. With the state set to the 4-byte mask key written four times,
OFB computes exactly the WebSocket mask, word by word, with the GIL
released. It reads the payload where it lies in the received bytes and
writes a new bytes object: about 0.2 ms per MiB here, against 1.2 ms
for the pure-Python path and 0.05 ms for the C extension
(bench/masking_methods.py).

`load()` checks the result against the pure-Python path on every length
up to 40 bytes at every offset (and a longer buffer) before it is used,
and gives None where the symbols are missing or the check fails (another
SSL library, a libcrypto built differently, a Python whose ctypes copies
bytes objects): the pure path then runs.
"""

from __future__ import annotations

import ctypes
from typing import Callable, Optional, Tuple, Union

BytesLike = Union[bytes, bytearray, memoryview]
MaskFunction = Callable[[BytesLike, bytes], bytes]
RangeMaskFunction = Callable[[bytes, int, int, bytes], bytes]

_BLOCK = 16  # OFB's block size
_SYMBOL = 'CRYPTO_ofb128_encrypt'


def _libcrypto() -> Optional[ctypes.CDLL]:
    """The libcrypto the interpreter already uses: through the _ssl
    extension module when it is a shared library (symbols of its
    dependencies resolve through its handle), else the process itself
    (an interpreter with _ssl built in)."""
    try:
        import _ssl
    except ImportError:
        return None
    path = getattr(_ssl, '__file__', None)
    try:
        return ctypes.CDLL(path)  # None: the process's own symbols
    except OSError:
        return None


def _bind() -> Optional[Tuple[MaskFunction, RangeMaskFunction]]:
    lib = _libcrypto()
    ofb = getattr(lib, _SYMBOL, None) if lib is not None else None
    labs = getattr(ctypes.CDLL(None), 'labs', None)
    if ofb is None or labs is None:
        return None
    ofb.restype = None
    ofb.argtypes = [
        ctypes.c_void_p,  # in
        ctypes.c_void_p,  # out
        ctypes.c_size_t,  # length
        ctypes.c_void_p,  # key (unused by the "cipher")
        ctypes.c_void_p,  # ivec: the 16-byte state
        ctypes.POINTER(ctypes.c_int),  # num: the phase within the state
        ctypes.c_void_p,  # block function
    ]
    block = ctypes.cast(labs, ctypes.c_void_p)
    new_state = ctypes.create_string_buffer
    address_of = ctypes.c_char_p
    as_address = ctypes.cast
    void_p = ctypes.c_void_p
    phase = ctypes.c_int
    by_ref = ctypes.byref

    def mask_range(data: bytes, start: int, end: int, key: bytes) -> bytes:
        """data[start:end] XORed with the 4-byte `key` repeated."""
        n = end - start
        if n < 2:  # (bytes of length 0 and 1 are shared objects)
            return bytes(b ^ key[0] for b in data[start:end])
        # A new object, written before anyone else can see it.
        out = bytes(n)
        source = as_address(address_of(data), void_p).value
        assert source is not None
        ofb(
            source + start,
            out,
            n,
            None,
            new_state(key * 4, _BLOCK),
            by_ref(phase(0)),
            block,
        )
        return out

    def mask_openssl(data: BytesLike, key: bytes) -> bytes:
        """XOR `data` with the 4-byte `key` repeated, from key[0]."""
        whole = data if isinstance(data, bytes) else bytes(data)
        return mask_range(whole, 0, len(whole), key)

    return mask_openssl, mask_range


def _agrees(
    candidate: MaskFunction,
    candidate_range: RangeMaskFunction,
    reference: MaskFunction,
) -> bool:
    key = b'\x8f\x13\xa5\x7c'
    sample = bytes(range(256)) * 9
    for start in range(4):
        for length in range(41):
            end = start + length
            expected = reference(sample[start:end], key)
            if (
                candidate(sample[start:end], key) != expected
                or candidate_range(sample, start, end, key) != expected
            ):
                return False
    return candidate(memoryview(sample)[3:], key) == reference(sample[3:], key)


def load(
    reference: MaskFunction,
) -> Optional[Tuple[MaskFunction, RangeMaskFunction]]:
    """(mask, mask_range) through OpenSSL, or None when they are not
    available here or disagree with `reference` (the pure-Python mask)."""
    try:
        bound = _bind()
    except (AttributeError, OSError, TypeError):
        return None
    if bound is None or not _agrees(*bound, reference):
        return None
    return bound
