#!/usr/bin/env python3
"""Micro-benchmark: ways to XOR-mask a payload with the standard library.

    .venv/bin/python bench/masking_methods.py               # 32 B .. 1 MiB
    .venv/bin/python bench/masking_methods.py --sizes 1048576 --repeat 9

Every method takes (payload, 4-byte key) and returns the masked bytes.
The payload is given as a memoryview slice of a larger buffer, which is
what the frame parser passes (`memoryview(buffer)[start:end]`). Each
method is first checked against a per-byte reference on every size (and
on sizes that are not multiples of 4), then timed: `--repeat` rounds of
a bounded number of calls (about 16 MiB of payload per round), best
round reported, as MB/s (10**6 bytes) and microseconds per call. The
methods run interleaved round by round, so that noise from the rest of
the machine spreads over all of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from mod_pywebsocket import masking, masking_openssl  # noqa: E402

Masker = Callable[[memoryview, bytes], bytes]
_fb = int.from_bytes


def reference(data: memoryview, key: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(bytes(data)))


# -- big integers ------------------------------------------------------


def int_whole_keybytes(data: memoryview, key: bytes) -> bytes:
    """One XOR over the whole payload; the key integer from the key
    bytes repeated."""
    n = len(data)
    keys = (key * ((n >> 2) + 1))[:n]
    return (_fb(data, 'little') ^ _fb(keys, 'little')).to_bytes(n, 'little')


_repunits: Dict[int, int] = {}


def _repunit(words: int) -> int:
    """sum(2 ** (32 * k) for k in range(words)), cached."""
    r = _repunits.get(words)
    if r is None:
        r = _repunits[words] = _fb(b'\x01\0\0\0' * words, 'little')
    return r


def int_whole_repunit(data: memoryview, key: bytes) -> bytes:
    """One XOR over the whole payload; the key integer as the 32-bit key
    times a cached repunit (one per size: memory-hungry, measured only)."""
    n = len(data)
    words = (n + 3) >> 2
    k = _fb(key, 'little') * _repunit(words)
    if n & 3:
        return (_fb(data, 'little') ^ k).to_bytes(words * 4, 'little')[:n]
    return (_fb(data, 'little') ^ k).to_bytes(n, 'little')


def int_whole_bytes_first(data: memoryview, key: bytes) -> bytes:
    """As int_whole_keybytes, converting a bytes copy (not the view)."""
    return int_whole_keybytes(memoryview(bytes(data)), key)


def make_int_chunks_join(chunk: int, repunit: bool) -> Masker:
    """XOR chunk by chunk (the key integer of one chunk built once per
    call), the masked chunks joined."""
    words = chunk >> 2

    def mask(data: memoryview, key: bytes) -> bytes:
        n = len(data)
        if n <= chunk:
            return int_whole_keybytes(data, key)
        if repunit:
            k = _fb(key, 'little') * _repunit(words)
        else:
            k = _fb(key * words, 'little')
        whole = n - n % chunk
        parts = [
            (_fb(data[i : i + chunk], 'little') ^ k).to_bytes(chunk, 'little')
            for i in range(0, whole, chunk)
        ]
        if whole < n:
            parts.append(int_whole_keybytes(data[whole:], key))
        return b''.join(parts)

    return mask


def make_int_chunks_into(chunk: int) -> Masker:
    """XOR chunk by chunk into a preallocated (zero-filled) bytearray."""
    words = chunk >> 2

    def mask(data: memoryview, key: bytes) -> bytes:
        n = len(data)
        if n <= chunk:
            return int_whole_keybytes(data, key)
        k = _fb(key, 'little') * _repunit(words)
        out = bytearray(n)
        whole = n - n % chunk
        for i in range(0, whole, chunk):
            out[i : i + chunk] = (
                _fb(data[i : i + chunk], 'little') ^ k
            ).to_bytes(chunk, 'little')
        if whole < n:
            out[whole:] = int_whole_keybytes(data[whole:], key)
        return bytes(out)

    return mask


def int_chunks_64k_inplace_old(data: memoryview, key: bytes) -> bytes:
    """mask_pure before issue #18: a bytearray copy of the payload, 64 KiB
    chunks XORed in place through a memoryview, then bytes(copy)."""
    chunk = 64 * 1024
    n = len(data)
    if n <= chunk:
        return int_whole_keybytes(data, key)
    out = bytearray(data)
    with memoryview(out) as view:
        k = _fb(key * (chunk >> 2), 'little')
        whole = n - n % chunk
        for offset in range(0, whole, chunk):
            end = offset + chunk
            view[offset:end] = (_fb(view[offset:end], 'little') ^ k).to_bytes(
                chunk, 'little'
            )
        if whole < n:
            view[whole:] = int_whole_keybytes(view[whole:], key)
    return bytes(out)


def int_big_endian(data: memoryview, key: bytes) -> bytes:
    """Whole payload, big-endian conversions."""
    n = len(data)
    keys = (key * ((n >> 2) + 1))[:n]
    return (_fb(data, 'big') ^ _fb(keys, 'big')).to_bytes(n, 'big')


def int_via_hex(data: memoryview, key: bytes) -> bytes:
    """bytes -> hex text -> int (base 16 is linear) and back."""
    n = len(data)
    keys = (key * ((n >> 2) + 1))[:n]
    x = int(bytes(data).hex() or '0', 16) ^ int(keys.hex() or '0', 16)
    return bytes.fromhex('%0*x' % (2 * n, x)) if n else b''


# -- byte tables ---------------------------------------------------------

_TABLES = [bytes(i ^ k for i in range(256)) for k in range(256)]


def translate_strided(data: memoryview, key: bytes) -> bytes:
    """Four strided slices, each translated with its key byte's table,
    assigned back into a bytearray with a stride."""
    src = bytes(data)
    out = bytearray(len(src))
    tables = _TABLES
    for i in range(4):
        out[i::4] = src[i::4].translate(tables[key[i]])
    return bytes(out)


def translate_strided_inplace(data: memoryview, key: bytes) -> bytes:
    """As translate_strided, on a bytearray copy of the payload."""
    out = bytearray(data)
    tables = _TABLES
    for i in range(4):
        out[i::4] = out[i::4].translate(tables[key[i]])
    return bytes(out)


def make_translate_inplace_pieces(piece: int) -> Masker:
    """translate_strided_inplace over pieces of `piece` bytes (a multiple
    of 4), each slice cache-sized."""

    def mask(data: memoryview, key: bytes) -> bytes:
        out = bytearray(data)
        n = len(out)
        tables = [_TABLES[b] for b in key]
        for base in range(0, n, piece):
            end = min(base + piece, n)
            for i in range(4):
                s = slice(base + i, end, 4)
                out[s] = out[s].translate(tables[i])
        return bytes(out)

    return mask


def translate_strided_chunked(data: memoryview, key: bytes) -> bytes:
    """translate_strided over 64 KiB pieces (cache-sized)."""
    chunk = 64 * 1024
    src = bytes(data)
    n = len(src)
    out = bytearray(n)
    tables = [_TABLES[b] for b in key]
    for base in range(0, n, chunk):
        end = min(base + chunk, n)
        for i in range(4):
            out[base + i : end : 4] = src[base + i : end : 4].translate(
                tables[i]
            )
    return bytes(out)


# -- per element ----------------------------------------------------------


def words_listcomp(data: memoryview, key: bytes) -> bytes:
    """64-bit words through memoryview.cast, XORed in a list
    comprehension (a Python-level loop per 8 bytes)."""
    n = len(data)
    whole = n & ~7
    k = _fb(key * 2, 'little')
    src = bytes(data[:whole])
    words = memoryview(src).cast('Q')
    import array

    out = array.array('Q', [w ^ k for w in words]).tobytes()
    if whole < n:
        out += int_whole_keybytes(data[whole:], key)
    return out


def bytes_genexpr(data: memoryview, key: bytes) -> bytes:
    """The textbook per-byte loop (for scale)."""
    return bytes(b ^ key[i & 3] for i, b in enumerate(bytes(data)))


# Where the payload starts in the buffer its memoryview slices.
OFFSET = 7


def methods() -> List[Tuple[str, Masker]]:
    ms: List[Tuple[str, Masker]] = [
        ('masking.mask_pure (this tree)', masking.mask_pure),
        ('int 64K chunks in place (pre-#18)', int_chunks_64k_inplace_old),
        ('int whole, key bytes', int_whole_keybytes),
        ('int whole, key repunit', int_whole_repunit),
        ('int whole, bytes copy first', int_whole_bytes_first),
        ('int whole, big-endian', int_big_endian),
    ]
    for chunk in (4096, 16384, 65536, 262144):
        ms.append(
            (
                'int %dK chunks, join, repunit' % (chunk >> 10),
                make_int_chunks_join(chunk, True),
            )
        )
    ms += [
        (
            'int 64K chunks, join, key bytes',
            make_int_chunks_join(65536, False),
        ),
        ('int 16K chunks into bytearray', make_int_chunks_into(16384)),
        ('int 64K chunks into bytearray', make_int_chunks_into(65536)),
        ('int via hex text', int_via_hex),
        ('translate strided 4 tables', translate_strided),
        ('translate strided, in place', translate_strided_inplace),
        ('translate strided, 64K pieces', translate_strided_chunked),
        (
            'translate in place, 64K pieces',
            make_translate_inplace_pieces(65536),
        ),
        (
            'translate in place, 256K pieces',
            make_translate_inplace_pieces(262144),
        ),
        ('64-bit words, list comprehension', words_listcomp),
        ('per-byte generator', bytes_genexpr),
    ]
    openssl = masking_openssl.load(masking.mask_pure)
    if openssl is not None:
        mask_openssl, mask_range = openssl

        def openssl_in_place(view: memoryview, key: bytes) -> bytes:
            # (what the frame parser calls: the received bytes, a range)
            return mask_range(view.obj, OFFSET, OFFSET + len(view), key)

        ms.append(('OpenSSL OFB, ctypes, range', openssl_in_place))
        ms.append(('OpenSSL OFB, ctypes, view', mask_openssl))
    if masking.mask_accelerated is not None:
        ms.append(('C extension (for scale)', masking.mask_accelerated))
    return ms


def check(ms: List[Tuple[str, Masker]]) -> None:
    key = os.urandom(4)
    for n in (
        0,
        1,
        3,
        5,
        31,
        32,
        125,
        1024,
        4097,
        65535,
        65536,
        65541,
        300001,
    ):
        buf = os.urandom(n + 16)
        view = memoryview(buf)[OFFSET : OFFSET + n]
        want = reference(view, key)
        for name, f in ms:
            got = f(view, key)
            if got != want or type(got) is not bytes:
                raise SystemExit('%s is wrong for %d bytes' % (name, n))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument(
        '--sizes',
        default='32,1024,65536,1048576',
        help='payload sizes in bytes, comma-separated',
    )
    p.add_argument('--repeat', type=int, default=5, help='rounds (best kept)')
    p.add_argument(
        '--budget',
        type=int,
        default=16 << 20,
        help='bytes masked per method per round (bounds the loops)',
    )
    p.add_argument(
        '--slow',
        action='store_true',
        help='also time the per-element methods (slow at 1 MiB)',
    )
    args = p.parse_args()
    ms = methods()
    check(ms)
    if not args.slow:
        ms = [
            (name, f)
            for name, f in ms
            if f not in (words_listcomp, bytes_genexpr, int_via_hex)
        ]
    print('all %d methods match the reference' % len(methods()))
    for n in [int(s) for s in args.sizes.split(',')]:
        buf = os.urandom(n + 16)
        view = memoryview(buf)[OFFSET : OFFSET + n]
        calls = max(1, min(200000, args.budget // max(n, 1)))
        best = {name: float('inf') for name, _ in ms}
        for _ in range(args.repeat):
            for name, f in ms:
                key = os.urandom(4)
                t0 = time.perf_counter()
                for _ in range(calls):
                    f(view, key)
                best[name] = min(
                    best[name], (time.perf_counter() - t0) / calls
                )
        print(
            '\n%d bytes (%d calls per round, best of %d)'
            % (n, calls, args.repeat)
        )
        print('  %-36s %10s %12s' % ('method', 'MB/s', 'us/call'))
        for name, _ in sorted(ms, key=lambda m: best[m[0]]):
            t = best[name]
            print('  %-36s %10.0f %12.3f' % (name, n / t / 1e6, t * 1e6))


if __name__ == '__main__':
    main()
