"""Every seed in fuzz/corpus/<harness>/ replayed through its harness
(fuzz/fuzz_<harness>.py, without atheris): the inputs the fuzzers found
stay fixed, and only the exceptions a harness documents escape."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

FUZZ_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'fuzz'
)
HARNESSES = ('frames', 'handshake', 'extensions', 'deflate')


def _seeds():
    for harness in HARNESSES:
        corpus = os.path.join(FUZZ_DIR, 'corpus', harness)
        for name in sorted(os.listdir(corpus)):
            yield pytest.param(
                harness,
                os.path.join(corpus, name),
                id='%s/%s' % (harness, name),
            )


@pytest.fixture(scope='module', autouse=True)
def fuzz_on_path():
    sys.path.insert(0, FUZZ_DIR)
    yield
    sys.path.remove(FUZZ_DIR)


@pytest.mark.parametrize('harness,seed', list(_seeds()))
def test_seed_passes_its_harness(harness, seed):
    target = importlib.import_module('fuzz_' + harness).target
    with open(seed, 'rb') as f:
        target(f.read())


def test_every_harness_has_seeds():
    for harness in HARNESSES:
        assert os.listdir(os.path.join(FUZZ_DIR, 'corpus', harness))
