"""masking: the pure path and the accelerator against a naive reference."""

import os
import random
import sys

import pytest

from conftest import require
from mod_pywebsocket import masking
from mod_pywebsocket.masking import RepeatedXorMasker, mask_pure

SIZES = list(range(0, 201)) + [
    1020,
    1023,
    1024,
    1025,
    1026,
    1027,
    4099,
    65535,
    65536,
    65537,
    2 * 65536,
    2 * 65536 + 7,
    1024 * 1024 + 3,
]


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _data(size: int) -> bytes:
    rng = random.Random(size)
    return (
        bytes(rng.getrandbits(8) for _ in range(size))
        if size < 70000
        else rng.randbytes(size)
    )


_REFERENCE = {}


def reference(size: int, key: bytes):
    if (size, key) not in _REFERENCE:
        data = _data(size)
        _REFERENCE[(size, key)] = (data, naive_mask(data, key))
    return _REFERENCE[(size, key)]


KEYS = [b'\x37\xfa\x21\x3d', b'\x00\x00\x00\x00', b'\xff\x01\x80\x7f']


@pytest.mark.parametrize('size', SIZES)
def test_mask_pure_matches_naive_reference(size):
    for key in KEYS:
        data, expected = reference(size, key)
        assert mask_pure(data, key) == expected


@pytest.mark.parametrize('size', [0, 1, 5, 125, 126, 65537, 1024 * 1024 + 3])
def test_mask_pure_accepts_bytearray_and_memoryview(size):
    data, expected = reference(size, KEYS[0])
    assert mask_pure(bytearray(data), KEYS[0]) == expected
    assert mask_pure(memoryview(data), KEYS[0]) == expected
    assert isinstance(mask_pure(memoryview(data), KEYS[0]), bytes)


@pytest.mark.parametrize('size', [1023, 1024, 2051])
def test_mask_pure_every_key_byte_at_every_position(size):
    # (from 1 KiB up each key byte has its own XOR table)
    data = _data(size)
    for k in range(256):
        key = bytes([k, 255 - k, (k * 7) & 255, (k + 128) & 255])
        assert mask_pure(data, key) == naive_mask(data, key)


def test_mask_pure_leaves_its_input_alone():
    data = bytearray(_data(4096))
    before = bytes(data)
    mask_pure(data, KEYS[0])
    mask_pure(memoryview(data), KEYS[2])
    assert data == before


def test_mask_is_an_involution():
    data = os.urandom(70000)
    assert mask_pure(mask_pure(data, KEYS[2]), KEYS[2]) == data


def test_rfc6455_masked_hello():
    assert mask_pure(b'Hello', b'\x37\xfa\x21\x3d') == bytes(
        [0x7F, 0x9F, 0x4D, 0x51, 0x58]
    )


@pytest.mark.skipif(not masking.ACCELERATED, reason='no accelerator here')
@pytest.mark.parametrize('size', SIZES)
def test_accelerated_mask_matches_pure(size):
    for key in KEYS:
        data, expected = reference(size, key)
        assert masking.mask_accelerated(data, key) == expected
        assert masking.mask_accelerated(memoryview(data), key) == expected


def test_mask_in_use_matches_pure():
    data, expected = reference(1024 * 1024 + 3, KEYS[0])
    assert masking.mask(data, KEYS[0]) == expected
    assert masking.ACCELERATED == (masking.mask_accelerated is not None)


def test_accelerator_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setenv('MOD_PYWEBSOCKET_PURE_MASKING', '1')
    assert masking._load_accelerator() is None


def test_missing_accelerator_falls_back_to_pure(monkeypatch):
    monkeypatch.delenv('MOD_PYWEBSOCKET_PURE_MASKING', raising=False)
    monkeypatch.setitem(sys.modules, 'mod_pywebsocket._speedups', None)
    assert masking._load_accelerator() is None


def test_c_accelerator_is_built_in_the_test_environment():
    # make test installs the package with its C extension; if the build
    # silently failed every "accelerated" test above would test pure code.
    # A checkout that never ran `pip install -e .` has no build: a skip
    # with the reason there, a failure in CI.
    require(
        masking.ACCELERATED,
        'the C extension mod_pywebsocket._speedups (pip install -e . '
        'builds it)',
    )
    with pytest.raises(ValueError):
        masking.mask_accelerated(b'data', b'key')


class TestRepeatedXorMasker:
    @pytest.mark.parametrize(
        'splits',
        [[1, 1, 1, 1, 1], [3, 2], [5], [0, 2, 0, 3], [4, 1], [7, 13, 64]],
    )
    def test_phase_is_kept_across_chunks(self, splits):
        total = sum(splits)
        data = os.urandom(total)
        key = KEYS[0]
        masker = RepeatedXorMasker(key)
        out = b''
        pos = 0
        for size in splits:
            out += masker.mask(data[pos : pos + size])
            pos += size
        assert out == naive_mask(data, key)

    def test_large_chunks_with_odd_lengths(self):
        data = os.urandom(65536 * 2 + 11)
        masker = RepeatedXorMasker(KEYS[2])
        out = masker.mask(data[:65537]) + masker.mask(data[65537:])
        assert out == naive_mask(data, KEYS[2])
