"""dispatch: scanning handler files, resolving resources safely, running
the handler's functions."""

import logging
import os
import textwrap

import pytest

from core_helpers import (
    client_close,
    client_text,
    make_stream,
    server_frames,
    written_close_codes,
)
from mod_pywebsocket import common
from mod_pywebsocket.common import (
    AbortedByUserException,
    DispatchException,
    HandshakeException,
)
from mod_pywebsocket.dispatch import (
    Dispatcher,
    HandlerSuite,
    load_alias_map,
    load_handler_file,
    load_handler_spec,
    resource_path,
    suite_from_namespace,
)

ECHO = '''
def web_socket_do_extra_handshake(request):
    pass

def web_socket_transfer_data(request):
    while True:
        message = request.ws_stream.receive_message()
        if message is None:
            return
        request.ws_stream.send_message(message)
'''


def write(path, text=ECHO):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    """root/ with handlers, and outside/ next to it."""
    root = tmp_path / 'root'
    outside = tmp_path / 'outside'
    write(str(root / 'echo_wsh.py'))
    write(str(root / 'a' / 'b_wsh.py'), ECHO + '\nNAME = "a/b"\n')
    write(str(root / 'a' / 'deep' / 'er' / 'c_wsh.py'))
    write(str(root / 'plain.py'), 'raise SystemExit("never loaded")\n')
    write(str(root / 'notes_wsh.txt'), 'not python')
    write(str(outside / 'secret_wsh.py'))
    return root, outside


def request_for(resource, data=b'', **kwargs):
    request, conn, stream = make_stream(data, **kwargs)
    request.ws_resource = resource
    return request, conn


class TestScanning:
    def test_resources_found(self, tree):
        root, _ = tree
        dispatcher = Dispatcher(str(root))
        assert dispatcher.resources() == ['/a/b', '/a/deep/er/c', '/echo']
        assert dispatcher.source_warnings() == []

    def test_nested_path_maps_to_nested_file(self, tree):
        root, _ = tree
        suite = Dispatcher(str(root)).get_handler_suite('/a/b')
        assert suite.path == str(root / 'a' / 'b_wsh.py')
        assert suite.transfer_data.__globals__['NAME'] == 'a/b'

    def test_query_is_stripped(self, tree):
        root, _ = tree
        dispatcher = Dispatcher(str(root))
        assert dispatcher.get_handler_suite(
            '/echo?x=1&y'
        ) is dispatcher.get_handler_suite('/echo')
        assert resource_path('/echo?a?b') == '/echo'

    def test_fragment_is_400(self, tree):
        root, _ = tree
        with pytest.raises(DispatchException) as info:
            Dispatcher(str(root)).get_handler_suite('/echo#frag')
        assert info.value.status == 400

    def test_missing_handler_is_none_and_404_on_use(self, tree):
        root, _ = tree
        dispatcher = Dispatcher(str(root))
        assert dispatcher.get_handler_suite('/nothing') is None
        request, _ = request_for('/nothing')
        with pytest.raises(DispatchException) as info:
            dispatcher.do_extra_handshake(request)
        assert info.value.status == 404
        with pytest.raises(DispatchException) as info:
            dispatcher.transfer_data(request)
        assert info.value.status == 404

    @pytest.mark.parametrize(
        'resource',
        ['/echo/', '/echo_wsh.py', '/ECHO', 'echo', '/a', '/a/b/', '//echo'],
    )
    def test_only_exact_names_match(self, tree, resource):
        root, _ = tree
        assert Dispatcher(str(root)).get_handler_suite(resource) is None

    def test_syntax_error_is_reported_and_others_load(self, tree):
        root, _ = tree
        write(str(root / 'broken_wsh.py'), 'def oops(:\n')
        dispatcher = Dispatcher(str(root))
        assert '/broken' not in dispatcher.resources()
        assert '/echo' in dispatcher.resources()
        [warning] = dispatcher.source_warnings()
        assert 'broken_wsh.py' in warning

    def test_missing_transfer_data_is_reported(self, tree):
        root, _ = tree
        write(
            str(root / 'half_wsh.py'),
            'def web_socket_do_extra_handshake(request):\n    pass\n',
        )
        dispatcher = Dispatcher(str(root))
        assert '/half' not in dispatcher.resources()
        [warning] = dispatcher.source_warnings()
        assert 'half_wsh.py' in warning
        assert 'web_socket_transfer_data' in warning

    def test_import_error_is_reported(self, tree, caplog):
        root, _ = tree
        write(str(root / 'imp_wsh.py'), 'import no_such_module_here\n' + ECHO)
        with caplog.at_level(logging.WARNING):
            dispatcher = Dispatcher(str(root))
        [warning] = dispatcher.source_warnings()
        assert 'imp_wsh.py' in warning and 'ModuleNotFoundError' in warning
        assert any('imp_wsh.py' in r.getMessage() for r in caplog.records)
        assert '/echo' in dispatcher.resources()

    def test_non_utf8_file_is_reported(self, tree):
        root, _ = tree
        with open(str(root / 'latin_wsh.py'), 'wb') as f:
            f.write(b'# \xe9\xff\n' + ECHO.encode())
        dispatcher = Dispatcher(str(root))
        assert '/latin' not in dispatcher.resources()
        assert len(dispatcher.source_warnings()) == 1

    def test_utf8_handler_loads_whatever_the_locale(self, tree):
        root, _ = tree
        write(
            str(root / 'utf_wsh.py'),
            '# caf\u00e9\nGREETING = "\u00e9t\u00e9"\n' + ECHO,
        )
        suite = Dispatcher(str(root)).get_handler_suite('/utf')
        assert suite.transfer_data.__globals__['GREETING'] == '\u00e9t\u00e9'

    def test_dashes_in_names(self, tree):
        root, _ = tree
        write(str(root / 'my-chat_wsh.py'))
        assert '/my-chat' in Dispatcher(str(root)).resources()

    def test_missing_root_serves_nothing_and_warns(self, tmp_path):
        # pywebsocket3's behaviour: no exception, every resource a 404.
        dispatcher = Dispatcher(str(tmp_path / 'missing'))
        assert dispatcher.resources() == []
        [warning] = dispatcher.source_warnings()
        assert 'not a directory' in warning

    def test_scan_dir_inside_root(self, tree):
        root, _ = tree
        dispatcher = Dispatcher(str(root), str(root / 'a'))
        assert dispatcher.resources() == ['/a/b', '/a/deep/er/c']

    def test_scan_dir_outside_root_is_rejected(self, tree):
        root, outside = tree
        with pytest.raises(DispatchException):
            Dispatcher(str(root), str(outside))
        with pytest.raises(DispatchException):
            Dispatcher(str(root), str(root) + '_sibling')
        with pytest.raises(DispatchException):
            Dispatcher(str(root), str(root / '..'))

    def test_root_given_through_a_symlink(self, tree, tmp_path):
        root, _ = tree
        link = tmp_path / 'root_link'
        os.symlink(str(root), str(link))
        assert Dispatcher(str(link)).resources() == [
            '/a/b',
            '/a/deep/er/c',
            '/echo',
        ]
        assert Dispatcher(str(link), str(link / 'a')).resources() == [
            '/a/b',
            '/a/deep/er/c',
        ]

    def test_scan_dir_given_through_a_symlink(self, tree, tmp_path):
        # The scan directory is reached through a link outside the root
        # but really lies inside it: resources are named from the root.
        root, _ = tree
        link = tmp_path / 'a_link'
        os.symlink(str(root / 'a'), str(link))
        dispatcher = Dispatcher(str(root), str(link))
        assert dispatcher.resources() == ['/a/b', '/a/deep/er/c']


class TestStayingInsideTheRoot:
    @pytest.mark.parametrize(
        'resource',
        [
            '/../outside/secret',
            '/a/../../outside/secret',
            '/a/../echo',
            '/%2e%2e/outside/secret',
            '/%2E%2E/outside/secret',
            '/a/%2e%2e/echo',
            '/..%2foutside%2fsecret',
            '/./echo',
        ],
    )
    def test_dot_dot_is_not_found(self, tree, resource):
        root, _ = tree
        dispatcher = Dispatcher(str(root))
        assert dispatcher.get_handler_suite(resource) is None

    def test_absolute_paths_are_not_found(self, tree):
        root, outside = tree
        dispatcher = Dispatcher(str(root))
        for resource in (
            str(outside / 'secret'),
            str(outside / 'secret_wsh.py'),
            str(root / 'echo'),
            str(root / 'echo_wsh.py'),
        ):
            assert dispatcher.get_handler_suite(resource) is None

    def test_symlinked_file_outside_root_is_skipped(self, tree):
        root, outside = tree
        os.symlink(str(outside / 'secret_wsh.py'), str(root / 'leak_wsh.py'))
        dispatcher = Dispatcher(str(root))
        assert dispatcher.get_handler_suite('/leak') is None
        [warning] = dispatcher.source_warnings()
        assert 'leak_wsh.py' in warning
        assert 'allow_handlers_outside_root_dir' in warning

    def test_symlinked_dir_outside_root_is_skipped(self, tree):
        root, outside = tree
        os.symlink(str(outside), str(root / 'ext'))
        dispatcher = Dispatcher(str(root))
        assert dispatcher.get_handler_suite('/ext/secret') is None
        assert len(dispatcher.source_warnings()) == 1

    def test_symlinks_outside_allowed_when_asked(self, tree):
        root, outside = tree
        os.symlink(str(outside / 'secret_wsh.py'), str(root / 'leak_wsh.py'))
        os.symlink(str(outside), str(root / 'ext'))
        dispatcher = Dispatcher(
            str(root), allow_handlers_outside_root_dir=True
        )
        assert dispatcher.get_handler_suite('/leak') is not None
        assert dispatcher.get_handler_suite('/ext/secret') is not None
        assert dispatcher.source_warnings() == []

    def test_symlink_inside_root_is_served(self, tree):
        root, _ = tree
        os.symlink(str(root / 'echo_wsh.py'), str(root / 'again_wsh.py'))
        assert Dispatcher(str(root)).get_handler_suite('/again') is not None

    def test_symlink_loop_terminates(self, tree):
        root, _ = tree
        os.symlink(str(root), str(root / 'a' / 'loop'))
        dispatcher = Dispatcher(str(root))
        assert '/echo' in dispatcher.resources()
        assert '/a/b' in dispatcher.resources()


class TestAliases:
    def test_alias_map_with_comments(self, tree, tmp_path):
        root, _ = tree
        alias_file = tmp_path / 'aliases'
        alias_file.write_text(
            textwrap.dedent('''\
            # resource aliases
            /echo-alias /echo      # same handler

               /x/y   /a/b
            # /ignored /echo
            ''')
        )
        dispatcher = Dispatcher(str(root))
        load_alias_map(dispatcher, str(alias_file))
        assert dispatcher.get_handler_suite(
            '/echo-alias'
        ) is dispatcher.get_handler_suite('/echo')
        assert dispatcher.get_handler_suite(
            '/x/y?q'
        ) is dispatcher.get_handler_suite('/a/b')
        assert dispatcher.get_handler_suite('/ignored') is None

    def test_alias_to_missing_resource(self, tree, tmp_path):
        root, _ = tree
        alias_file = tmp_path / 'aliases'
        alias_file.write_text('/new /missing\n')
        with pytest.raises(DispatchException):
            load_alias_map(Dispatcher(str(root)), str(alias_file))

    @pytest.mark.parametrize('line', ['/only-one\n', '/a /b /c\n'])
    def test_malformed_alias_line(self, tree, tmp_path, line):
        root, _ = tree
        alias_file = tmp_path / 'aliases'
        alias_file.write_text(line)
        with pytest.raises(DispatchException) as info:
            load_alias_map(Dispatcher(str(root)), str(alias_file))
        assert 'aliases:1' in str(info.value)

    def test_add_handler_without_scanning(self, tmp_path):
        dispatcher = Dispatcher(str(tmp_path))
        assert dispatcher.resources() == []
        calls = []
        suite = HandlerSuite('bound', lambda r: None, calls.append)
        dispatcher.add_handler('/bound', suite)
        assert dispatcher.get_handler_suite('/bound?x') is suite


def _suite(extra=None, transfer=None, passive=None):
    return HandlerSuite(
        'test',
        extra or (lambda request: None),
        transfer or (lambda request: None),
        passive,
    )


def _dispatcher(tmp_path, suite):
    dispatcher = Dispatcher(str(tmp_path))
    dispatcher.add_handler('/h', suite)
    return dispatcher


class TestExtraHandshake:
    def test_value_error_is_403(self, tmp_path):
        def extra(request):
            raise ValueError('bad origin')

        request, _ = request_for('/h')
        with pytest.raises(HandshakeException) as info:
            _dispatcher(tmp_path, _suite(extra)).do_extra_handshake(request)
        assert info.value.status == 403

    def test_handshake_exception_keeps_its_status(self, tmp_path):
        def extra(request):
            raise HandshakeException('who are you', 401)

        request, _ = request_for('/h')
        with pytest.raises(HandshakeException) as info:
            _dispatcher(tmp_path, _suite(extra)).do_extra_handshake(request)
        assert info.value.status == 401

    def test_aborted_by_user_passes_through(self, tmp_path):
        def extra(request):
            raise AbortedByUserException('drop')

        request, _ = request_for('/h')
        with pytest.raises(AbortedByUserException):
            _dispatcher(tmp_path, _suite(extra)).do_extra_handshake(request)

    def test_dispatch_exception_passes_through(self, tmp_path):
        def extra(request):
            raise DispatchException('gone', 410)

        request, _ = request_for('/h')
        with pytest.raises(DispatchException) as info:
            _dispatcher(tmp_path, _suite(extra)).do_extra_handshake(request)
        assert info.value.status == 410

    def test_passive_handler_answers(self, tmp_path):
        def passive(request):
            return 4001, 'passive'

        request, _ = request_for('/h')
        dispatcher = _dispatcher(tmp_path, _suite(passive=passive))
        dispatcher.do_extra_handshake(request)
        assert dispatcher.passive_closing_handshake(request) == (
            4001,
            'passive',
        )

    def test_without_passive_handler_the_close_is_echoed(self, tmp_path):
        request, _ = request_for('/h')
        dispatcher = _dispatcher(tmp_path, _suite())
        dispatcher.do_extra_handshake(request)
        request.ws_close_code, request.ws_close_reason = 1001, 'away'
        assert dispatcher.passive_closing_handshake(request) == (1001, 'away')

    def test_default_extra_handshake(self, tmp_path):
        path = write(
            str(tmp_path / 'only_wsh.py'),
            'def web_socket_transfer_data(request):\n    pass\n',
        )
        suite = load_handler_file(path)
        request, _ = request_for('/only')
        assert suite.do_extra_handshake(request) is None


class TestTransferData:
    def test_normal_return_closes_with_1000(self, tmp_path):
        def transfer(request):
            request.ws_stream.send_message(request.ws_stream.receive_message())

        request, conn = request_for(
            '/h', client_text('hi') + client_close(1000)
        )
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        frames = server_frames(conn.written_data())
        assert frames[0].payload == b'hi'
        assert written_close_codes(conn) == [1000]
        assert request.client_terminated  # waited for the reply

    def test_handler_raising_closes_with_1011_and_logs(self, tmp_path, caplog):
        def transfer(request):
            raise RuntimeError('handler bug')

        request, conn = request_for('/h', client_close(1011))
        with caplog.at_level(logging.ERROR):
            # re-raised to the caller, as pywebsocket3 does
            with pytest.raises(
                RuntimeError,
                match='^web_socket_transfer'
                '_data raised exception for /h: handler bug',
            ):
                _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(
                    request
                )
        assert written_close_codes(conn) == [1011]
        [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert record.exc_info and record.exc_info[0] is RuntimeError

    def test_protocol_error_closes_with_its_code(self, tmp_path):
        def transfer(request):
            raise common.InvalidUTF8Exception('from handler code')

        request, conn = request_for('/h')
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        assert written_close_codes(conn) == [1007]

    def test_protocol_error_from_the_stream_sends_one_close(self, tmp_path):
        def transfer(request):
            request.ws_stream.receive_message()

        request, conn = request_for('/h', client_text(b'\xff'))
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        assert written_close_codes(conn) == [1007]

    def test_message_too_big_from_the_stream_is_1009(self, tmp_path):
        def transfer(request):
            request.ws_stream.receive_message()

        request, conn = request_for(
            '/h', client_text('x' * 200), max_message_size=100
        )
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        assert written_close_codes(conn) == [1009]

    def test_vanished_peer_ends_quietly(self, tmp_path):
        def transfer(request):
            request.ws_stream.receive_message()

        request, conn = request_for('/h', b'')
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        assert conn.written == []

    def test_aborted_by_user_is_reraised(self, tmp_path):
        def transfer(request):
            raise AbortedByUserException('drop it')

        request, conn = request_for('/h')
        with pytest.raises(AbortedByUserException):
            _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(
                request
            )
        assert conn.written == []

    def test_handler_that_closed_itself(self, tmp_path):
        def transfer(request):
            request.ws_stream.close_connection(4000, 'done')

        request, conn = request_for('/h', client_close(4000))
        _dispatcher(tmp_path, _suite(transfer=transfer)).transfer_data(request)
        assert written_close_codes(conn) == [4000]

    def test_close_failure_after_an_error_is_swallowed(self, tmp_path):
        class BrokenStream:
            def close_connection(self, *args, **kwargs):
                raise OSError('transport gone')

        def transfer(request):
            raise RuntimeError('bug')

        request, _ = request_for('/h')
        request.ws_stream = BrokenStream()
        error = _dispatcher(
            tmp_path, _suite(transfer=transfer)
        ).run_transfer_data(request)
        assert isinstance(error, RuntimeError)

    def test_run_transfer_data_returns_the_error_instead(self, tmp_path):
        # What the hosts call: the connection is finished, nothing raised.
        def transfer(request):
            raise RuntimeError('handler bug')

        request, conn = request_for('/h', client_close(1011))
        error = _dispatcher(
            tmp_path, _suite(transfer=transfer)
        ).run_transfer_data(request)
        assert str(error) == 'handler bug'
        assert written_close_codes(conn) == [1011]


class TestLoading:
    def test_missing_file(self, tmp_path):
        with pytest.raises(DispatchException) as info:
            load_handler_file(str(tmp_path / 'none_wsh.py'))
        assert info.value.status == 500

    def test_suite_from_namespace(self):
        def transfer(request):
            pass

        suite = suite_from_namespace(
            {'web_socket_transfer_data': transfer}, 'p'
        )
        assert suite.transfer_data is transfer
        assert suite.passive_closing_handshake is None
        with pytest.raises(DispatchException):
            suite_from_namespace({'web_socket_transfer_data': 42}, 'p')

    def test_optional_functions_must_be_callable_when_defined(self):
        def transfer(request):
            pass

        for name in (
            'web_socket_do_extra_handshake',
            'web_socket_passive_closing_handshake',
        ):
            with pytest.raises(DispatchException) as info:
                suite_from_namespace(
                    {'web_socket_transfer_data': transfer, name: True}, 'p'
                )
            assert str(info.value) == 'p: %s is not callable.' % name
        # None is the same as not defined
        suite_from_namespace(
            {
                'web_socket_transfer_data': transfer,
                'web_socket_do_extra_handshake': None,
            },
            'p',
        )

    def test_handler_module_globals(self, tmp_path):
        path = write(str(tmp_path / 'g_wsh.py'), 'FILE = __file__\n' + ECHO)
        suite = load_handler_file(path)
        assert suite.transfer_data.__globals__['FILE'] == path


class SpecHandler:
    """A handler given as `module:object` (see load_handler_spec)."""

    @staticmethod
    def web_socket_transfer_data(request):
        request.ws_stream.send_message('from spec')


class TestHandlerSpec:
    def test_file_path(self, tree):
        root, _ = tree
        suite = load_handler_spec(str(root / 'echo_wsh.py'))
        assert suite.path == str(root / 'echo_wsh.py')

    def test_module_and_object(self):
        suite = load_handler_spec(__name__ + ':SpecHandler')
        assert suite.transfer_data == SpecHandler.web_socket_transfer_data

    def test_module_without_handler_functions(self):
        with pytest.raises(DispatchException) as info:
            load_handler_spec('textwrap')
        assert info.value.status == 500

    @pytest.mark.parametrize(
        'spec', ['no_such_module_xyz', __name__ + ':NoSuchObject']
    )
    def test_unimportable(self, spec):
        with pytest.raises(DispatchException) as info:
            load_handler_spec(spec)
        assert info.value.status == 500


NO_EXTRA = '''
def web_socket_transfer_data(request):
    pass
'''

EVENTS = '''
def on_message(conn, message):
    conn.send(message)
'''


class TestPywebsocket3Dispatcher:
    """pywebsocket3.dispatch.Dispatcher keeps pywebsocket3's scanning
    rule; mod_pywebsocket's Dispatcher does not need the function."""

    @pytest.fixture
    def root(self, tmp_path):
        write(str(tmp_path / 'echo_wsh.py'))
        write(str(tmp_path / 'no_extra_wsh.py'), NO_EXTRA)
        write(str(tmp_path / 'events_wsh.py'), EVENTS)
        write(str(tmp_path / 'neither_wsh.py'), 'X = 1\n')
        return tmp_path

    def test_ours_serves_handlers_without_extra_handshake(self, root):
        dispatcher = Dispatcher(str(root))
        assert dispatcher.resources() == ['/echo', '/events', '/no_extra']

    def test_pywebsocket3s_skips_them_with_its_warnings(self, root):
        from pywebsocket3 import dispatch

        dispatcher = dispatch.Dispatcher(str(root), None, False, 'utf-8')
        assert dispatcher.resources() == ['/echo', '/events']
        assert sorted(dispatcher._handler_suite_map) == ['/echo', '/events']
        assert sorted(dispatcher.source_warnings()) == [
            str(root / 'neither_wsh.py')
            + ': web_socket_do_extra_handshake is not defined.',
            str(root / 'no_extra_wsh.py')
            + ': web_socket_do_extra_handshake is not defined.',
        ]
        assert isinstance(dispatcher, Dispatcher)

    def test_the_rest_of_the_module_is_ours(self):
        import mod_pywebsocket.dispatch
        from pywebsocket3 import dispatch

        assert (
            dispatch.Dispatcher
            is mod_pywebsocket.dispatch.Pywebsocket3Dispatcher
        )
        assert dispatch.DispatchException is DispatchException
        assert (
            dispatch._source_handler_file
            is mod_pywebsocket.dispatch._source_handler_file
        )
        assert 'DispatchException' in dir(dispatch)
        with pytest.raises(AttributeError):
            dispatch.no_such_name
