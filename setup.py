"""Packaging for mod_pywebsocket (standard library only at run time;
`mod_pywebsocket[redis]` adds the Redis broker's client)."""

from setuptools import Extension, find_packages, setup

setup(
    name='mod_pywebsocket',
    version='4.1.0',
    description='WebSocket extension for Apache (mod_python) and a '
                'standalone WebSocket server, on one protocol core',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='BSD-3-Clause',
    packages=find_packages(include=['mod_pywebsocket', 'mod_pywebsocket.*',
                                    'pywebsocket3', 'pywebsocket3.*']),
    python_requires='>=3.9',
    extras_require={'redis': ['redis>=4.3']},
    # Optional: without a C compiler the package runs in pure Python.
    ext_modules=[Extension('mod_pywebsocket._speedups',
                           ['mod_pywebsocket/_speedups.c'], optional=True)],
    entry_points={'console_scripts': [
        'mod_pywebsocket-standalone = mod_pywebsocket.standalone:main',
        'mod_pywebsocket-client = mod_pywebsocket.client:main',
    ]},
    classifiers=[
        'License :: OSI Approved :: BSD License',
        'Programming Language :: Python :: 3',
        'Topic :: Internet :: WWW/HTTP :: WSGI :: Server',
    ],
)
