"""Find and run the handler for a WebSocket resource.

The dispatcher scans a handler root (or a scan directory inside it) for
`*_wsh.py` files once, when it is built: `/a/b` is served by
`<root>/a/b_wsh.py`. A broken handler file is reported and skipped; every
other file still loads. Lookups are exact matches against the scanned
names, so `..`, `%2e%2e` or absolute paths can never reach a file outside
the scan; symlinks that lead out of the root are skipped unless
`allow_handlers_outside_root_dir` is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import types
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Protocol,
    Set,
    Tuple,
)

from mod_pywebsocket import common, events, util
from mod_pywebsocket.common import (
    AbortedByUserException,
    BadOperationException,
    ConnectionTerminatedException,
    DispatchException,
    HandshakeException,
    ProtocolError,
)

_logger = logging.getLogger(__name__)

HANDLER_SUFFIX = '_wsh.py'
_DO_EXTRA_HANDSHAKE = 'web_socket_do_extra_handshake'
_TRANSFER_DATA = 'web_socket_transfer_data'
_PASSIVE_CLOSING = 'web_socket_passive_closing_handshake'


Request = Any  # mod_python's request, or one with its surface
PassiveClosing = Callable[[Request], Tuple[Optional[int], str]]


def _default_passive_closing(request: Request) -> Tuple[Optional[int], str]:
    return request.ws_close_code, request.ws_close_reason


class Suite(Protocol):
    """What the dispatcher runs for a resource: a classic handler's
    functions (HandlerSuite) or an event-style one (EventHandlerSuite)."""

    path: str
    passive_closing_handshake: Optional[PassiveClosing]

    def do_extra_handshake(self, request: Request) -> None: ...

    def transfer_data(self, request: Request) -> None: ...


class HandlerSuite:
    """The functions of one handler file."""

    def __init__(
        self,
        path: str,
        do_extra_handshake: Callable[[Request], None],
        transfer_data: Callable[[Request], None],
        passive_closing_handshake: Optional[PassiveClosing] = None,
    ) -> None:
        self.path = path
        self.do_extra_handshake = do_extra_handshake
        self.transfer_data = transfer_data
        self.passive_closing_handshake = passive_closing_handshake


def _handshake_function(suite: Suite) -> str:
    return (
        'on_connect' if hasattr(suite, 'on_connect') else _DO_EXTRA_HANDSHAKE
    )


def _no_extra_handshake(request: Request) -> None:
    pass


def _broken_handler(path: str, problem: str) -> DispatchException:
    return DispatchException(
        '%s: %s.' % (path, problem), common.HTTP_STATUS_INTERNAL_SERVER_ERROR
    )


def suite_from_namespace(
    namespace: Dict[str, Any], path: str, require_extra_handshake: bool = False
) -> Suite:
    """A HandlerSuite from a handler file's globals (DispatchException if
    it lacks web_socket_transfer_data, or if an optional function is there
    but not callable). `require_extra_handshake`: as pywebsocket3, a
    classic handler must define web_socket_do_extra_handshake too."""
    if events.is_event_namespace(namespace):
        return events.suite_from_events(namespace, path)
    if require_extra_handshake:
        # pywebsocket3's checks, in its order and words.
        for name in (_DO_EXTRA_HANDSHAKE, _TRANSFER_DATA):
            if name not in namespace:
                raise _broken_handler(path, '%s is not defined' % name)
            if not callable(namespace[name]):
                raise _broken_handler(path, '%s is not callable' % name)
    transfer = namespace.get(_TRANSFER_DATA)
    if not callable(transfer):
        raise DispatchException(
            '%s defines neither %s() nor on_message()'
            % (path, _TRANSFER_DATA),
            common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
        )
    for name in (_DO_EXTRA_HANDSHAKE, _PASSIVE_CLOSING):
        if namespace.get(name) is not None and not callable(namespace[name]):
            raise _broken_handler(path, '%s is not callable' % name)
    extra = namespace.get(_DO_EXTRA_HANDSHAKE) or _no_extra_handshake
    passive = namespace.get(_PASSIVE_CLOSING)
    return HandlerSuite(path, extra, transfer, passive)


def load_handler_file(
    path: str, require_extra_handshake: bool = False
) -> Suite:
    """Run a handler file (UTF-8, whatever the locale) and return its
    suite. Raises DispatchException with the reason on any failure.
    `require_extra_handshake`: see suite_from_namespace()."""
    try:
        with open(path, encoding='utf-8') as f:
            source = f.read()
        code = compile(source, path, 'exec')
    except (OSError, SyntaxError, ValueError) as e:
        raise DispatchException(
            'cannot load %s: %s' % (path, e),
            common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
        )
    module = types.ModuleType(
        '_wsh_' + os.path.basename(path)[:-3].replace('-', '_')
    )
    module.__file__ = path
    try:
        exec(code, module.__dict__)
    except Exception as e:
        raise DispatchException(
            '%s failed while loading: %s: %s' % (path, type(e).__name__, e),
            common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
        )
    return suite_from_namespace(module.__dict__, path, require_extra_handshake)


_HANDLER_NAMES = (
    _DO_EXTRA_HANDSHAKE,
    _TRANSFER_DATA,
    _PASSIVE_CLOSING,
    'on_connect',
    'on_message',
    'on_disconnect',
)


def load_handler_spec(spec: str) -> Suite:
    """A suite from a handler file path (`/srv/echo_wsh.py`) or an
    importable `package.module` / `package.module:object` whose functions
    or methods are the handler's. DispatchException on any failure."""
    if spec.endswith('.py') or os.sep in spec:
        return load_handler_file(os.path.abspath(spec))
    module_name, _, attribute = spec.partition(':')
    try:
        target = importlib.import_module(module_name)
        if attribute:
            target = getattr(target, attribute)
    except Exception as e:
        raise DispatchException(
            'cannot import handler %s: %s: %s' % (spec, type(e).__name__, e),
            common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
        )
    namespace = {
        name: getattr(target, name)
        for name in _HANDLER_NAMES
        if hasattr(target, name)
    }
    return suite_from_namespace(namespace, spec)


def _is_within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resource_path(resource: str) -> str:
    """The path part of a resource: query stripped; a fragment is a 400."""
    if '#' in resource:
        raise DispatchException(
            'a WebSocket URI has no fragment: %r' % resource,
            common.HTTP_STATUS_BAD_REQUEST,
        )
    return resource.split('?', 1)[0]


class Dispatcher:
    """Maps resources to handler suites and runs them."""

    # Whether scanned classic handler files must define
    # web_socket_do_extra_handshake (optional here; see
    # Pywebsocket3Dispatcher).
    require_extra_handshake = False

    def __init__(
        self,
        root_dir: Optional[str],
        scan_dir: Optional[str] = None,
        allow_handlers_outside_root_dir: bool = False,
    ) -> None:
        """`root_dir` None: no handler files, only add_handler()."""
        self._handlers: Dict[str, Suite] = {}
        self._source_warnings: List[str] = []
        self._allow_outside = allow_handlers_outside_root_dir
        if root_dir is None:
            self._root = self._root_as_given = ''
            return
        self._root = os.path.realpath(root_dir)
        self._root_as_given = os.path.abspath(root_dir)
        if not os.path.isdir(self._root):
            # As pywebsocket3: no handlers (every resource is a 404), and
            # a warning; a scan directory outside the root still raises.
            self._warn(
                'handler root %s is not a directory; no handlers' % root_dir
            )
        scan = os.path.abspath(scan_dir) if scan_dir else self._root_as_given
        if not _is_within(os.path.realpath(scan), self._root):
            raise DispatchException(
                'scan directory %s is not inside the handler root %s'
                % (scan_dir, root_dir)
            )
        self._scan(scan)

    def _warn(self, message: str) -> None:
        self._source_warnings.append(message)
        _logger.warning('%s', message)

    def _scan(self, scan_dir: str) -> None:
        seen_dirs = set()
        for dirpath, dirnames, filenames in os.walk(
            scan_dir, followlinks=True
        ):
            real_dir = os.path.realpath(dirpath)
            if real_dir in seen_dirs:  # a symlink loop
                dirnames[:] = []
                continue
            seen_dirs.add(real_dir)
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(HANDLER_SUFFIX):
                    self._add_file(os.path.join(dirpath, name))

    def _add_file(self, path: str) -> None:
        real = os.path.realpath(path)
        if not self._allow_outside and not _is_within(real, self._root):
            self._warn(
                '%s leads outside the handler root %s; skipped (see '
                'allow_handlers_outside_root_dir)' % (path, self._root)
            )
            return
        try:
            suite = load_handler_file(path, self.require_extra_handshake)
        except DispatchException as e:
            self._warn(str(e))
            return
        relative = os.path.relpath(path, self._root_as_given)
        if relative.startswith(os.pardir):
            relative = os.path.relpath(real, self._root)
        resource = '/' + relative[: -len(HANDLER_SUFFIX)].replace(os.sep, '/')
        self._handlers[resource] = suite

    def source_warnings(self) -> List[str]:
        """Problems met while loading handler files."""
        return list(self._source_warnings)

    def resources(self) -> List[str]:
        """The resources that have a handler."""
        return sorted(self._handlers)

    def add_resource_path_alias(self, alias: str, existing: str) -> None:
        """Serve `alias` with the handler of `existing`."""
        suite = self._handlers.get(existing)
        if suite is None:
            raise DispatchException(
                'No handler for %s to alias as %s' % (existing, alias)
            )
        self._handlers[alias] = suite

    def add_handler(self, resource: str, suite: Suite) -> None:
        """Bind `resource` to a suite directly (no scanning)."""
        self._handlers[resource] = suite

    def handler_files(self) -> Set[str]:
        """Real paths of the files the handlers were loaded from (never
        served as static files)."""
        files = set()
        for suite in self._handlers.values():
            path = getattr(suite, 'path', None)
            if isinstance(path, str) and os.path.isfile(path):
                files.add(os.path.realpath(path))
        return files

    def get_handler_suite(self, resource: str) -> Optional[Suite]:
        """The suite serving `resource`, or None. DispatchException (400)
        for a resource with a fragment."""
        return self._handlers.get(resource_path(resource))

    def _suite(self, request: Request) -> Suite:
        suite = self.get_handler_suite(request.ws_resource)
        if suite is None:
            raise DispatchException(
                'No handler for %s' % resource_path(request.ws_resource)
            )
        return suite

    def do_extra_handshake(self, request: Request) -> None:
        """Run the handler's web_socket_do_extra_handshake. Its
        HandshakeException keeps its status; AbortedByUserException passes
        through; anything else it raises becomes a 403."""
        suite = self._suite(request)
        try:
            suite.do_extra_handshake(request)
        except (HandshakeException, AbortedByUserException, DispatchException):
            raise
        except Exception as e:
            # A bug in the handler, not a refusal it meant: the traceback
            # goes to the log at the default level, the client gets a 403
            # with the short reason only.
            _logger.error(
                '%s raised in its opening-handshake code (%s); '
                'the client gets 403',
                suite.path,
                _handshake_function(suite),
                exc_info=True,
            )
            raise HandshakeException(
                'handshake rejected by the handler: '
                '%s: %s' % (type(e).__name__, e),
                common.HTTP_STATUS_FORBIDDEN,
            )

    def transfer_data(self, request: Request) -> None:
        """Run web_socket_transfer_data and finish the connection (see
        run_transfer_data). As in pywebsocket3, an exception the handler
        raised (other than a protocol error or a vanished peer) is then
        re-raised to the caller, its message prefixed with the resource
        (BadOperationException is not: sending after the close is how
        many handlers end);
        DispatchException when no handler serves the resource."""
        error = self.run_transfer_data(request)
        if error is not None:
            util.prepend_message_to_exception(
                'web_socket_transfer_data raised exception for %s: '
                % request.ws_resource,
                error,
            )
            raise error

    def run_transfer_data(self, request: Request) -> Optional[Exception]:
        """What the hosts call: run web_socket_transfer_data and finish
        the connection: close with 1000 when the handler returns, with
        the error's code on a protocol error, with 1011 (and a logged
        traceback) when it raises; returns what it raised then. Raises
        only AbortedByUserException (and DispatchException when no
        handler serves the resource)."""
        suite = self._suite(request)
        stream = request.ws_stream
        try:
            suite.transfer_data(request)
            if not request.server_terminated:
                stream.close_connection()
        except AbortedByUserException:
            raise
        except ProtocolError as e:
            _logger.info('%s: protocol error: %s', request.ws_resource, e)
            self._close_quietly(stream, e.code)
        except ConnectionTerminatedException as e:
            _logger.info('%s: connection ended: %s', request.ws_resource, e)
        except Exception as e:
            _logger.error(
                '%s raised in web_socket_transfer_data',
                suite.path,
                exc_info=True,
            )
            self._close_quietly(stream, common.STATUS_INTERNAL_ENDPOINT_ERROR)
            # pywebsocket3 ends a handler's BadOperationException here
            # too, and forwards every other exception.
            if not isinstance(e, BadOperationException):
                return e
        return None

    def passive_closing_handshake(
        self, request: Request
    ) -> Tuple[Optional[int], str]:
        """The (code, reason) the handler answers a peer's close with."""
        suite = self._suite(request)
        if suite.passive_closing_handshake is None:
            return _default_passive_closing(request)
        return suite.passive_closing_handshake(request)

    @staticmethod
    def _close_quietly(stream: Any, code: int) -> None:
        try:
            stream.close_connection(code, wait_response=True)
        except Exception as e:  # the transport may be gone already
            _logger.debug('close after error failed: %s', e)


class Pywebsocket3Dispatcher(Dispatcher):
    """`pywebsocket3.dispatch.Dispatcher`: pywebsocket3's scanning rule (a
    classic handler file without a callable web_socket_do_extra_handshake
    is skipped, with a source warning in pywebsocket3's words) and its
    constructor; otherwise the Dispatcher above. Our own hosts use
    Dispatcher, where the function is optional."""

    require_extra_handshake = True

    def __init__(
        self,
        root_dir: Optional[str],
        scan_dir: Optional[str] = None,
        allow_handlers_outside_root_dir: bool = False,
        handler_encoding: Optional[str] = None,
    ) -> None:
        """`handler_encoding` is accepted and unused: handler files are
        read as UTF-8. `allow_handlers_outside_root_dir` stays False
        unless given (pywebsocket3's default is True)."""
        super().__init__(root_dir, scan_dir, allow_handlers_outside_root_dir)

    @property
    def _handler_suite_map(self) -> Dict[str, Suite]:
        """pywebsocket3's private name for the resource → suite map (its
        tests read it)."""
        return self._handlers


def load_alias_map(dispatcher: Dispatcher, path: str) -> None:
    """Read `alias existing` lines ('#' starts a comment) from a file."""
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise DispatchException(
                    '%s:%d: expected "alias existing"' % (path, number)
                )
            dispatcher.add_resource_path_alias(parts[0], parts[1])


# pywebsocket3's module-level helpers (its tests and some embedders call
# them); the Dispatcher above does the same work its own way.


def _normalize_path(path: str) -> str:
    """An absolute path with '/' separators ('\\' taken as one too)."""
    return os.path.abspath(path.replace('\\', '/')).replace('\\', '/')


def _create_path_to_resource_converter(
    base_dir: str,
) -> Callable[[str], Optional[str]]:
    """A function from a handler file path under `base_dir` to its
    resource ('/c/h' for <base_dir>/c/h_wsh.py), None for other paths."""
    base = (
        _normalize_path(os.path.realpath(base_dir.replace('\\', '/'))).rstrip(
            '/'
        )
        + '/'
    )

    def convert(path: str) -> Optional[str]:
        path = _normalize_path(os.path.realpath(path.replace('\\', '/')))
        if not path.endswith(HANDLER_SUFFIX) or not path.startswith(base):
            return None
        return path[len(base) - 1 : -len(HANDLER_SUFFIX)]

    return convert


def _enumerate_handler_file_paths(directory: str) -> Iterator[str]:
    """Every *_wsh.py file under `directory`."""
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            if name.endswith(HANDLER_SUFFIX):
                yield os.path.join(dirpath, name)


def _source_handler_file(handler_definition: str) -> Suite:
    """The suite a handler file's source text defines; DispatchException
    when it does not compile, raises, or lacks web_socket_transfer_data."""
    namespace: Dict[str, Any] = {}
    try:
        exec(compile(handler_definition, '<handler>', 'exec'), namespace)
    except Exception as e:
        raise DispatchException(
            'handler source failed: %s: %s' % (type(e).__name__, e),
            common.HTTP_STATUS_INTERNAL_SERVER_ERROR,
        )
    return suite_from_namespace(namespace, '<handler>')
