"""Access limits shared by every process and thread of one Apache server.

Under prefork each WebSocket is served by a child process of its own, so
counters in one process cannot cap anything. This module keeps the counts
in one small file per Apache server instead (`limits-<parent pid>` in a
private directory), and decides with the rules of `access_policy`:

- Connections: an open WebSocket holds an open-file-description lock
  (fcntl `F_OFD_SETLK`, Linux) on its own 16-byte slot, which names its
  address key's digest. The kernel drops the lock when that descriptor is
  closed, also when the child crashes or is killed, so a dead connection
  is never counted. Counting is reading the slots and asking the kernel
  which ones are locked.
- Handshake rate and log throttling: a fixed table of per-address records
  (digest, tokens, stamp, last logged, skipped); a new address takes an
  empty or idle record of a small window, else the least recently used.
- A lock on the first byte serializes every change; it is held for a few
  microseconds and dropped by the kernel if its holder dies.

Nothing here imports mod_python.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import stat
import struct
from typing import Dict, Optional, Tuple

from mod_pywebsocket.access_policy import (
    CAP_RETRY_AFTER,
    AccessRefused,
    LimitSettings,
    address_key,
    cap_refusal,
    retry_after_seconds,
    take_token,
)

_MAGIC = b'MPWSLIM1'
_HEADER_SIZE = 64
_RECORD = struct.Struct('=16sdddq')  # digest, tokens, stamp, logged, n
RATE_RECORDS = 4096
_WINDOW = 8  # records a new address may take
_SLOT_SIZE = 16
CONNECTION_BASE = _HEADER_SIZE + RATE_RECORDS * _RECORD.size
MAX_SLOTS = 65536
_EMPTY = bytes(_SLOT_SIZE)
_NEVER = -1e300
# struct flock on Linux: l_type, l_whence, l_start, l_len, l_pid (+ pad)
_FLOCK = struct.Struct('hhqqi4x')


def ofd_locks_available() -> bool:
    return hasattr(fcntl, 'F_OFD_SETLK')


def _lock(fd: int, start: int, length: int, wait: bool) -> bool:
    command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
    try:
        fcntl.fcntl(
            fd,
            command,
            _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0),
        )
        return True
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _unlock(fd: int, start: int, length: int) -> None:
    fcntl.fcntl(
        fd,
        fcntl.F_OFD_SETLK,
        _FLOCK.pack(fcntl.F_UNLCK, os.SEEK_SET, start, length, 0),
    )


def _locked_by_another(fd: int, start: int, length: int) -> bool:
    answer = fcntl.fcntl(
        fd,
        fcntl.F_OFD_GETLK,
        _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0),
    )
    return _FLOCK.unpack(answer)[0] != fcntl.F_UNLCK


def digest_of(key: str) -> bytes:
    """16 bytes naming an address key (never all zero)."""
    digest = hashlib.blake2b(
        key.encode('utf-8', 'replace'), digest_size=_SLOT_SIZE
    ).digest()
    return digest if digest != _EMPTY else b'\x01' + digest[1:]


def default_directory() -> str:
    import tempfile  # (only for servers that set limits)

    return os.path.join(
        tempfile.gettempdir(), 'mod_pywebsocket-%d' % os.geteuid()
    )


def private_directory(path: str) -> str:
    """`path`, created 0700 if missing; OSError unless it is a real
    directory owned by this user that nobody else may write to."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & 0o022
    ):
        raise OSError(
            '%s must be a directory owned by uid %d and not '
            'writable by others' % (path, os.geteuid())
        )
    return path


class Ticket:
    """One admitted WebSocket: the descriptor holding its slot's lock."""

    def __init__(self, fd: int, offset: int, key: str) -> None:
        self.fd = fd
        self.offset = offset
        self.key = key


class SharedLimits:
    """`admit` before a handshake (a Ticket, or AccessRefused 429/503),
    `release` when it is over. One instance per option set; every
    instance of one Apache server uses the same file."""

    def __init__(
        self,
        settings: LimitSettings,
        directory: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None:
        if not ofd_locks_available():
            raise OSError(
                'connection limits under Apache need Linux '
                'open file description locks (F_OFD_SETLK)'
            )
        self.settings = settings
        self.directory = directory or default_directory()
        self.path = os.path.join(
            self.directory, name or 'limits-%d' % os.getppid()
        )
        self._ready = False

    # ---- the file ------------------------------------------------------

    def _open(self) -> int:
        if not self._ready:
            private_directory(self.directory)
        fd = os.open(
            self.path,
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            _lock(fd, 0, 1, wait=True)
            if os.fstat(fd).st_size < CONNECTION_BASE:
                os.pwrite(fd, _MAGIC, 0)
                os.ftruncate(fd, CONNECTION_BASE)
            elif os.pread(fd, len(_MAGIC), 0) != _MAGIC:
                raise OSError(
                    '%s is not a mod_pywebsocket limits file' % self.path
                )
            if not self._ready:
                self._ready = True
                self._remove_stale_files()
        except BaseException:
            os.close(fd)
            raise
        return fd  # with the first byte locked

    def _remove_stale_files(self) -> None:
        """Files of Apache servers that are gone (their parent pid)."""
        for entry in os.listdir(self.directory):
            if not entry.startswith('limits-'):
                continue
            pid = entry[len('limits-') :]
            if not pid.isdigit() or int(pid) == os.getppid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                try:
                    os.unlink(os.path.join(self.directory, entry))
                except OSError:
                    pass
            except OSError:
                pass  # alive, another user's

    # ---- per-address records -------------------------------------------

    def _find_record(
        self, fd: int, digest: bytes, now: float
    ) -> Tuple[int, list]:
        start = int.from_bytes(digest[:4], 'big') % (
            RATE_RECORDS - _WINDOW + 1
        )
        base = _HEADER_SIZE + start * _RECORD.size
        data = os.pread(fd, _WINDOW * _RECORD.size, base)
        records = [
            list(_RECORD.unpack_from(data, i * _RECORD.size))
            for i in range(len(data) // _RECORD.size)
        ]
        while len(records) < _WINDOW:
            records.append([_EMPTY, 0.0, 0.0, 0.0, 0])
        choice = None
        for i, record in enumerate(records):
            if record[0] == digest:
                return base + i * _RECORD.size, record
        settings = self.settings
        for i, record in enumerate(records):
            idle = record[0] == _EMPTY or (
                now - record[3] >= settings.log_interval
                and (
                    not settings.handshake_rate
                    or record[1] + (now - record[2]) * settings.handshake_rate
                    >= settings.handshake_burst
                )
            )
            if idle:
                choice = i
                break
        if choice is None:  # least recently used
            choice = min(
                range(_WINDOW), key=lambda i: max(records[i][2], records[i][3])
            )
        fresh = [digest, float(settings.handshake_burst), now, _NEVER, 0]
        return base + choice * _RECORD.size, fresh

    @staticmethod
    def _put_record(fd: int, offset: int, record: list) -> None:
        os.pwrite(fd, _RECORD.pack(*record), offset)

    def _log_check(self, fd: int, digest: bytes, now: float) -> Optional[int]:
        offset, record = self._find_record(fd, digest, now)
        result: Optional[int]
        if now - record[3] < self.settings.log_interval:
            record[4] += 1
            result = None
        else:
            result = int(record[4])
            record[3], record[4] = now, 0
        self._put_record(fd, offset, record)
        return result

    # ---- admission -----------------------------------------------------

    def admit(self, address: str, now: float) -> Ticket:
        settings = self.settings
        key = address_key(address, settings.ipv6_prefix_length)
        digest = digest_of(key)
        fd = self._open()
        try:
            if settings.handshake_rate:
                offset, record = self._find_record(fd, digest, now)
                record[1], record[2], wait = take_token(
                    record[1],
                    record[2],
                    now,
                    settings.handshake_rate,
                    settings.handshake_burst,
                )
                self._put_record(fd, offset, record)
                if wait:
                    raise AccessRefused(
                        'too many handshakes from this address',
                        429,
                        retry_after_seconds(wait),
                        self._log_check(fd, digest, now),
                    )
            total, mine, free, slots = self._count(fd, digest)
            reason = cap_refusal(
                total,
                mine,
                settings.max_connections,
                settings.max_connections_per_ip,
            )
            if reason is None and free is None and slots >= MAX_SLOTS:
                reason = 'the connection table is full'
            if reason is not None:
                raise AccessRefused(
                    reason,
                    503,
                    CAP_RETRY_AFTER,
                    self._log_check(fd, digest, now),
                )
            offset = CONNECTION_BASE + _SLOT_SIZE * (
                free if free is not None else slots
            )
            if not _lock(fd, offset, _SLOT_SIZE, wait=False):
                raise OSError(
                    'slot at %d of %s is locked' % (offset, self.path)
                )
            os.pwrite(fd, digest, offset)
            _unlock(fd, 0, 1)
        except BaseException:
            os.close(fd)
            raise
        return Ticket(fd, offset, key)

    def _count(
        self, fd: int, digest: bytes
    ) -> Tuple[int, int, Optional[int], int]:
        """(open in total, open for digest, a free slot or None, slots)."""
        size = os.fstat(fd).st_size - CONNECTION_BASE
        slots = max(0, size) // _SLOT_SIZE
        data = os.pread(fd, slots * _SLOT_SIZE, CONNECTION_BASE)
        total = mine = 0
        free = None
        for index in range(slots):
            slot = data[index * _SLOT_SIZE : (index + 1) * _SLOT_SIZE]
            if slot == _EMPTY:
                free = index if free is None else free
                continue
            offset = CONNECTION_BASE + index * _SLOT_SIZE
            if _locked_by_another(fd, offset, _SLOT_SIZE):
                total += 1
                mine += slot == digest
            else:  # its holder died: clear it
                os.pwrite(fd, _EMPTY, offset)
                free = index if free is None else free
        return total, mine, free, slots

    def release(self, ticket: Ticket) -> None:
        """End an admitted WebSocket (idempotent)."""
        fd, ticket.fd = ticket.fd, -1
        if fd < 0:
            return
        try:
            _lock(fd, 0, 1, wait=True)
            os.pwrite(fd, _EMPTY, ticket.offset)
        finally:
            os.close(fd)  # drops the slot and first byte

    def snapshot(self) -> Tuple[int, Dict[str, int]]:
        """(open in total, open per digest hex), for tests and tools."""
        fd = self._open()
        try:
            size = os.fstat(fd).st_size - CONNECTION_BASE
            slots = max(0, size) // _SLOT_SIZE
            data = os.pread(fd, slots * _SLOT_SIZE, CONNECTION_BASE)
            counts: Dict[str, int] = {}
            for index in range(slots):
                slot = data[index * _SLOT_SIZE : (index + 1) * _SLOT_SIZE]
                if slot != _EMPTY and _locked_by_another(
                    fd, CONNECTION_BASE + index * _SLOT_SIZE, _SLOT_SIZE
                ):
                    counts[slot.hex()] = counts.get(slot.hex(), 0) + 1
            return sum(counts.values()), counts
        finally:
            os.close(fd)
