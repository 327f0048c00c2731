"""masking: the pure path, OpenSSL and the C extension against a naive
reference."""

import os
import random
import subprocess
import sys
import threading

import pytest

from conftest import require
from mod_pywebsocket import masking, masking_openssl
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


OPENSSL = masking_openssl.load(mask_pure)


def require_openssl(which=0):
    # Debian's python3 loads libcrypto for its ssl module: the path a
    # clone without the C extension runs must be there in CI.
    require(OPENSSL is not None, "OpenSSL's libcrypto (CRYPTO_ofb128_encrypt)")
    return OPENSSL[which]


@pytest.mark.parametrize('size', [0, 1, 2, 3, 5, 2047, 2048, 4099, 65537])
def test_openssl_mask_range_reads_the_payload_where_it_lies(size):
    mask_range = require_openssl(1)
    data = _data(size + 9)
    for start in range(4):
        for key in KEYS:
            end = start + size
            masked = mask_range(data, start, end, key)
            assert masked == naive_mask(data[start:end], key)
            assert type(masked) is bytes
    assert data == _data(size + 9)  # the received bytes are left alone


@pytest.mark.parametrize('size', [0, 1, 5, 1023, 1024, 2048, 70001])
def test_mask_range_in_use_matches_the_reference(size):
    data = _data(size + 6)
    for key in KEYS:
        assert masking.mask_range(data, 5, 5 + size, key) == naive_mask(
            data[5 : 5 + size], key
        )


@pytest.mark.parametrize('size', [0, 1, 7, 8, 9, 4099, 65536, 70001])
def test_the_c_mask_range_reads_the_payload_where_it_lies(size):
    require(masking.ACCELERATED, 'the C extension mod_pywebsocket._speedups')
    from mod_pywebsocket._speedups import mask_range

    assert masking.mask_range is mask_range  # what the frame parser calls
    data = _data(size + 9)
    for start in range(4):
        for key in KEYS:
            masked = mask_range(data, start, start + size, key)
            assert masked == naive_mask(data[start : start + size], key)
            assert type(masked) is bytes
    assert data == _data(size + 9)
    for bad in ((-1, 4, KEYS[0]), (5, 4, KEYS[0]), (0, size + 10, KEYS[0])):
        with pytest.raises(ValueError):
            mask_range(data, *bad)
    with pytest.raises(ValueError):
        mask_range(data, 0, 1, b'key')


def test_masked_results_are_new_objects_each_time():
    # The OpenSSL path writes into a bytes object it has just made: two
    # equal payloads must never come back as one shared object.
    mask_range = require_openssl(1)
    data = bytes(4096)
    first = mask_range(data, 0, 4096, KEYS[0])
    second = mask_range(data, 0, 4096, KEYS[2])
    assert first is not second
    assert first == bytes(KEYS[0] * 1024) and second == bytes(KEYS[2] * 1024)


@pytest.mark.parametrize('size', SIZES)
def test_openssl_mask_matches_naive_reference(size):
    mask_openssl = require_openssl()
    for key in KEYS:
        data, expected = reference(size, key)
        assert mask_openssl(data, key) == expected
        assert mask_openssl(memoryview(data), key) == expected
        assert isinstance(mask_openssl(bytearray(data), key), bytes)


def test_openssl_mask_every_key_byte_at_every_phase():
    mask_openssl = require_openssl()
    data = _data(4099)
    for k in range(256):
        key = bytes([k, 255 - k, (k * 7) & 255, (k + 128) & 255])
        for start in range(4):
            view = memoryview(data)[start:]
            assert mask_openssl(view, key) == naive_mask(view, key)


def test_openssl_mask_leaves_its_input_alone():
    mask_openssl = require_openssl()
    data = bytearray(_data(70000))
    before = bytes(data)
    mask_openssl(data, KEYS[0])
    mask_openssl(memoryview(data)[5:], KEYS[2])
    assert data == before


def test_openssl_mask_is_right_from_many_threads_at_once():
    # The call releases the GIL: each thread's key must stay its own.
    mask_openssl = require_openssl()
    data = _data(1024 * 1024 + 3)
    keys = [bytes([i, 2 * i, 3 * i, 255 - i]) for i in range(1, 9)]
    expected = {key: mask_pure(data, key) for key in keys}
    wrong = []

    def work(key):
        for _ in range(5):
            if mask_openssl(data, key) != expected[key]:
                wrong.append(key)

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert wrong == []


def test_openssl_path_is_refused_when_its_self_check_fails():
    require_openssl()

    def wrong_reference(data, key):
        return bytes(len(data))

    assert masking_openssl.load(wrong_reference) is None


def test_openssl_path_is_refused_without_libcrypto(monkeypatch):
    monkeypatch.setattr(masking_openssl, '_libcrypto', lambda: None)
    assert masking_openssl.load(mask_pure) is None


def _path_in_subprocess(**env):
    code = 'from mod_pywebsocket import masking; print(masking.PATH)'
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith('MOD_PYWEBSOCKET_')
    }
    result = subprocess.run(
        [sys.executable, '-c', code],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(clean, **env),
        check=True,
    )
    return result.stdout.strip()


def test_environment_chooses_the_masking_path():
    require_openssl()
    default = 'C extension' if masking.ACCELERATED else 'OpenSSL'
    assert _path_in_subprocess() == default
    assert _path_in_subprocess(MOD_PYWEBSOCKET_MASKING='bogus') == default
    assert _path_in_subprocess(MOD_PYWEBSOCKET_MASKING='openssl') == 'OpenSSL'
    assert (
        _path_in_subprocess(MOD_PYWEBSOCKET_MASKING='python') == 'pure Python'
    )
    assert (
        _path_in_subprocess(MOD_PYWEBSOCKET_PURE_MASKING='1') == 'pure Python'
    )


def test_apache_python_masks_through_openssl_without_the_extension(tmp_path):
    # mod_python runs Debian's /usr/bin/python3, where a copied package
    # usually has no C extension built: it must find libcrypto there.
    python = '/usr/bin/python3'
    require(os.path.exists(python), 'Debian python3 (mod_python runs it)')
    result = subprocess.run(
        [
            python,
            '-c',
            'from mod_pywebsocket import masking; print(masking.PATH)',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        env=dict(
            PATH=os.environ.get('PATH', ''),
            PYTHONPATH=os.path.dirname(os.path.dirname(masking.__file__)),
            MOD_PYWEBSOCKET_MASKING='openssl',
        ),
    )
    assert result.stdout.strip() == 'OpenSSL', result.stderr


@pytest.mark.parametrize('size', [0, 5, 2047, 2048, 65537])
def test_openssl_path_masks_short_and_long_payloads(monkeypatch, size):
    mask_openssl = require_openssl()
    calls = []

    def counting(data, key):
        calls.append(len(data))
        return mask_openssl(data, key)

    mask_range = require_openssl(1)

    def counting_range(data, start, end, key):
        calls.append(end - start)
        return mask_range(data, start, end, key)

    monkeypatch.setattr(masking, 'mask_openssl', counting)
    monkeypatch.setattr(masking, 'mask_range_openssl', counting_range)
    data, expected = reference(size, KEYS[0])
    assert masking._mask_through_openssl(data, KEYS[0]) == expected
    assert (
        masking._mask_range_through_openssl(data, 0, size, KEYS[0]) == expected
    )
    # Short payloads skip the ctypes call, which costs more than they do.
    assert calls == ([size, size] if size >= masking._OPENSSL_MIN else [])


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
