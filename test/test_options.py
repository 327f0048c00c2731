"""The option table: one declaration per option makes the standalone
command line and config file, the Apache PythonOptions, the connection
settings both hosts share, and the README's reference."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT_DIR
from mod_pywebsocket import apache_options, options
from mod_pywebsocket.standalone import parse_args


@pytest.mark.parametrize('host', ['standalone', 'apache'])
def test_readme_reference_is_the_generated_one(host):
    with open(os.path.join(ROOT_DIR, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    assert options.readme_block(host) in readme, (
        'README.md is out of date: paste the output of '
        'python -m mod_pywebsocket.options'
    )


def test_every_option_is_documented_once():
    dests = [o.dest for o in options.OPTIONS]
    assert len(dests) == len(set(dests))
    flags = [f for o in options.OPTIONS for f in o.flags]
    assert len(flags) == len(set(flags))
    for option in options.OPTIONS:
        assert option.flags or option.apache, option.dest
        assert option.help.strip(), option.dest


def test_command_line_defaults_are_the_table_defaults():
    parsed = parse_args([])
    for option in options.OPTIONS:
        if option.flags and option.dest not in ('port', 'websock_handlers'):
            assert getattr(parsed, option.dest) == option.default, option.dest
    assert parsed.port == 80 and parsed.websock_handlers == '.'


def test_both_hosts_build_the_same_connection_settings(tmp_path):
    standalone = options.server_options(
        parse_args(
            [
                '--max-message-size',
                '1000',
                '--close-timeout',
                '3',
                '--deflate-level',
                '5',
                '--deflate-server-no-context-takeover',
                '--allowed-origins',
                'same',
                '--allow-draft75',
                '--keepalive-interval',
                '0',
                '--rsv-close-code',
                '1003',
            ]
        )
    )
    prefix = apache_options.PREFIX
    apache = apache_options.parse_options(
        {
            prefix + 'handler_root': str(tmp_path),
            prefix + 'max_message_size': '1000',
            prefix + 'close_timeout': '3',
            prefix + 'deflate_compression_level': '5',
            prefix + 'deflate_server_no_context_takeover': 'On',
            prefix + 'allowed_origins': 'same',
            prefix + 'allow_draft75': 'On',
            prefix + 'rsv_close_code': '1003',
        }
    ).server_options
    for name in (
        'allow_draft75',
        'max_message_size',
        'close_timeout',
        'keepalive_interval',
        'rsv_close_code',
    ):
        assert getattr(standalone, name) == getattr(apache, name), name
    assert vars(standalone.deflate) == vars(apache.deflate)
    for options_ in (standalone, apache):
        assert options_.origin_policies.policy_for('/x').same


def test_config_file_switches_and_repeated_options(tmp_path):
    config = tmp_path / 'server.ini'
    config.write_text(
        '[pywebsocket]\nno-deflate = on\nallow_draft75 = yes\n'
        'handler = /a=x_wsh.py\n        /b=y_wsh.py\n'
        'deflate-level = 7\n'
    )
    parsed = parse_args(['--config', str(config)])
    assert parsed.deflate is False and parsed.allow_draft75 is True
    assert parsed.handler_bindings == ['/a=x_wsh.py', '/b=y_wsh.py']
    assert parsed.deflate_level == 7
    assert (
        parse_args(
            ['--config', str(config), '--deflate-level', '2']
        ).deflate_level
        == 2
    )  # flags win


def test_bad_values_name_the_option_on_both_hosts(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(['--deflate-level', '12'])
    assert info.value.code == 2
    assert '--deflate-level' in capsys.readouterr().err
    config = tmp_path / 'bad.ini'
    config.write_text('[pywebsocket]\nclose-timeout = soon\n')
    with pytest.raises(SystemExit) as info:
        parse_args(['--config', str(config)])
    assert 'close-timeout' in str(info.value) and 'soon' in str(info.value)
    with pytest.raises(apache_options.OptionError) as error:
        apache_options.parse_options(
            {
                apache_options.HANDLER_ROOT: str(tmp_path),
                apache_options.PREFIX + 'deflate_compression_level': '12',
            }
        )
    assert 'mod_pywebsocket.deflate_compression_level' in str(error.value)


def test_rsv_close_code_is_1002_unless_asked(capsys):
    assert parse_args([]).rsv_close_code == 1002
    assert options.server_options(parse_args([])).rsv_close_code == 1002
    parsed = parse_args(['--rsv-close-code', '1003'])
    assert parsed.rsv_close_code == 1003
    assert options.server_options(parsed).rsv_close_code == 1003
    for bad in ('1000', '1001', 'x', ''):
        with pytest.raises(SystemExit) as info:
            parse_args(['--rsv-close-code', bad])
        assert info.value.code == 2
        assert '--rsv-close-code' in capsys.readouterr().err
