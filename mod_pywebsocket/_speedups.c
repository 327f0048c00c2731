/* Optional accelerators for mod_pywebsocket: XOR masking (RFC 6455 5.3)
 * and, under Apache, one call per read or write of a connection's filter
 * chain (apache_io.py). Built when a C compiler is present; the Python
 * code falls back to pure Python / ctypes otherwise.
 *
 * This file does not link against httpd or APR: the Apache functions are
 * called through addresses Python resolved (ctypes) and passes in. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#ifdef __linux__
#include <pthread.h>
#include <sys/eventfd.h>
#endif
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

#if PY_VERSION_HEX < 0x030A0000  /* Python 3.9 */
static PyObject *
Py_NewRef(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static int
PyModule_AddObjectRef(PyObject *module, const char *name, PyObject *value)
{
    Py_INCREF(value);
    if (PyModule_AddObject(module, name, value) < 0) {
        Py_DECREF(value);
        return -1;
    }
    return 0;
}
#endif

/* dst[i] = src[i] ^ k[i % 4], eight bytes at a time; without the GIL
 * for a large payload (a small one is done before a switch would be). */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n,
         const unsigned char k[4])
{
    Py_ssize_t i = 0;
    uint64_t key64;
    unsigned char k8[8];
    PyThreadState *state = NULL;

    if (n >= 65536)
        state = PyEval_SaveThread();
    memcpy(k8, k, 4);
    memcpy(k8 + 4, k, 4);
    memcpy(&key64, k8, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, src + i, 8);
        word ^= key64;
        memcpy(dst + i, &word, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 3];
    if (state != NULL)
        PyEval_RestoreThread(state);
}

/* src[0:n] masked with the 4-byte key as new bytes. */
static PyObject *
masked_bytes(const void *src, Py_ssize_t n, const void *key)
{
    PyObject *result = PyBytes_FromStringAndSize(NULL, n);

    if (result != NULL)
        xor_mask((unsigned char *)PyBytes_AS_STRING(result),
                 (const unsigned char *)src, n, (const unsigned char *)key);
    return result;
}

static PyObject *
speedups_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, key;
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*y*:mask", &data, &key))
        return NULL;
    if (key.len != 4)
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
    else
        result = masked_bytes(data.buf, data.len, key.buf);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

/* mask_range(data, start, end, key) -> bytes: mask(data[start:end], key)
 * without a view or slice (what the frame parser calls per frame). */
static PyObject *
speedups_mask_range(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    Py_ssize_t start, end;
    PyObject *result = NULL;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "mask_range(data, start, end, key) takes 4 arguments");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred())
        return NULL;
    end = PyLong_AsSsize_t(args[2]);
    if (end == -1 && PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[3], &key, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (key.len != 4)
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
    else if (start < 0 || end < start || end > data.len)
        PyErr_SetString(PyExc_ValueError, "range outside the data");
    else
        result = masked_bytes((const char *)data.buf + start, end - start,
                              key.buf);
    PyBuffer_Release(&data);
    PyBuffer_Release(&key);
    return result;
}

/* ---- Apache connection I/O (apache_io.ConnectionIO) ----------------- */

/* httpd 2.4 / APR 1.x prototypes (LP64: apr_status_t int, apr_off_t
 * int64, apr_size_t size_t, enums int). */
typedef int (*get_brigade_fn)(void *filter, void *bb, int mode, int block,
                              int64_t readbytes);
typedef int (*flatten_fn)(void *bb, char *buf, size_t *len);
typedef int (*cleanup_fn)(void *bb);
typedef int (*brigade_write_fn)(void *bb, void *flush, void *ctx,
                                const char *str, size_t nbytes);
typedef int (*fflush_fn)(void *filter, void *bb);

#define FN_GET_BRIGADE 0
#define FN_FLATTEN 1
#define FN_CLEANUP 2
#define FN_BRIGADE_WRITE 3
#define FN_FFLUSH 4
#define FN_COUNT 5

#define AP_MODE_READBYTES 0
#define APR_BLOCK_READ 0
#define APR_NONBLOCK_READ 1
#define MAX_READ (16 * 1024 * 1024)

/* A non-NULL address from a Python int; NULL with an exception set.
 * (Whether it points at the right thing is the caller's business, as
 * with ctypes.) */
static void *
address(PyObject *value, const char *what)
{
    void *p;

    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int address", what);
        return NULL;
    }
    if (_PyLong_Sign(value) < 0) {
        PyErr_Format(PyExc_ValueError, "%s is negative", what);
        return NULL;
    }
    p = PyLong_AsVoidPtr(value);
    if (p == NULL) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "%s is a NULL pointer", what);
        return NULL;
    }
    return p;
}

/* fns: a tuple of n function addresses, into out[0..n-1]. */
static int
function_addresses(PyObject *fns, void **out, Py_ssize_t n)
{
    Py_ssize_t i;

    if (!PyTuple_Check(fns) || PyTuple_GET_SIZE(fns) != n) {
        PyErr_Format(PyExc_TypeError,
                     "fns must be a tuple of %zd function addresses", n);
        return -1;
    }
    for (i = 0; i < n; i++) {
        out[i] = address(PyTuple_GET_ITEM(fns, i), "a function address");
        if (out[i] == NULL)
            return -1;
    }
    return 0;
}

/* fns: the FN_COUNT read and write functions, in FN_* order. */
static int
functions(PyObject *fns, void *out[FN_COUNT])
{
    return function_addresses(fns, out, FN_COUNT);
}

/* The pointer-sized word at base + offset (an int: aligned, not
 * negative) into *out: 0, or -1 with an exception. */
static int
word_at(const char *base, PyObject *offset, void **out)
{
    Py_ssize_t at = PyLong_AsSsize_t(offset);

    if (at == -1 && PyErr_Occurred())
        return -1;
    if (at < 0 || at % (Py_ssize_t)sizeof(void *) != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "offsets must be aligned and not negative");
        return -1;
    }
    *out = *(void *const *)(base + at);
    return 0;
}

/* One read of up to `size` bytes through the input filters: a new bytes
 * object (empty when nothing came; NULL with an exception only when out
 * of memory), the APR status in *status. Releases the GIL. */
static PyObject *
read_bytes(void *fn[FN_COUNT], void *filter, void *bb, int block,
           Py_ssize_t size, int *status)
{
    size_t got = 0;
    PyObject *data;
    int st;

    *status = -1;  /* (no read made) */
    /* READBYTES returns at most `size` bytes: flattened straight into a
     * bytes object of that size, shrunk afterwards. Nothing else refers
     * to it yet, so it may be filled without the GIL. */
    data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = ((get_brigade_fn)fn[FN_GET_BRIGADE])(
        filter, bb, AP_MODE_READBYTES,
        block ? APR_BLOCK_READ : APR_NONBLOCK_READ, (int64_t)size);
    if (st == 0) {
        got = (size_t)size;
        st = ((flatten_fn)fn[FN_FLATTEN])(bb, PyBytes_AS_STRING(data), &got);
        if (got > (size_t)size)  /* never, by APR's contract */
            got = (size_t)size;
    }
    ((cleanup_fn)fn[FN_CLEANUP])(bb);
    Py_END_ALLOW_THREADS
    *status = st;
    if (got == 0) {
        Py_DECREF(data);
        return PyBytes_FromStringAndSize(NULL, 0);
    }
    if ((Py_ssize_t)got < size && _PyBytes_Resize(&data, (Py_ssize_t)got) < 0)
        return NULL;
    return data;
}

static PyObject *
speedups_apache_read(PyObject *self, PyObject *const *args,
                     Py_ssize_t nargs)
{
    void *fn[FN_COUNT], *filter, *bb;
    Py_ssize_t size;
    int block, status;
    PyObject *data;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "apache_read(fns, input_filter, brigade, block, "
                        "size) takes 5 arguments");
        return NULL;
    }
    if (functions(args[0], fn) < 0
        || (filter = address(args[1], "input_filter")) == NULL
        || (bb = address(args[2], "brigade")) == NULL)
        return NULL;
    if ((block = PyObject_IsTrue(args[3])) < 0)
        return NULL;
    size = PyLong_AsSsize_t(args[4]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size < 1 || size > MAX_READ) {
        PyErr_SetString(PyExc_ValueError, "size must be 1 to 16 MiB");
        return NULL;
    }
    data = read_bytes(fn, filter, bb, block, size, &status);
    if (data == NULL)
        return NULL;
    return Py_BuildValue("(iN)", status, data);
}

/* Write and flush `len` bytes; the APR status. Blocks until the client
 * has taken them (or Apache's Timeout): without the GIL, like a ctypes
 * call; `buf` must stay unchanged meanwhile. */
static int
write_bytes(void *fn[FN_COUNT], void *filter, void *bb, const char *buf,
            size_t len)
{
    int status;

    Py_BEGIN_ALLOW_THREADS
    status = ((brigade_write_fn)fn[FN_BRIGADE_WRITE])(bb, NULL, NULL, buf,
                                                      len);
    if (status == 0)
        status = ((fflush_fn)fn[FN_FFLUSH])(filter, bb);
    ((cleanup_fn)fn[FN_CLEANUP])(bb);
    Py_END_ALLOW_THREADS
    return status;
}

static PyObject *
speedups_apache_write(PyObject *self, PyObject *const *args,
                      Py_ssize_t nargs)
{
    void *fn[FN_COUNT], *filter, *bb;
    Py_buffer data;
    int status;

    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "apache_write(fns, output_filter, brigade, data) "
                        "takes 4 arguments");
        return NULL;
    }
    if (functions(args[0], fn) < 0
        || (filter = address(args[1], "output_filter")) == NULL
        || (bb = address(args[2], "brigade")) == NULL)
        return NULL;
    if (!PyBytes_Check(args[3])) {
        /* bytes only: immutable while the GIL is released. */
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    status = write_bytes(fn, filter, bb, (const char *)data.buf,
                         (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromLong(status);
}

/* peek(address, offsets) -> tuple: the pointer-sized words at address +
 * each offset (a conn_rec's fields in one call; ctypes.from_address does
 * one per call, and costs more). */
static PyObject *
speedups_peek(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    char *base;
    Py_ssize_t i, n;
    void *word;
    PyObject *result, *value;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError,
                        "peek(address, offsets) takes 2 arguments");
        return NULL;
    }
    if ((base = address(args[0], "address")) == NULL)
        return NULL;
    if (!PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "offsets must be a tuple");
        return NULL;
    }
    n = PyTuple_GET_SIZE(args[1]);
    result = PyTuple_New(n);
    if (result == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (word_at(base, PyTuple_GET_ITEM(args[1], i), &word) < 0)
            goto fail;
        value = PyLong_FromVoidPtr(word);
        if (value == NULL)
            goto fail;
        PyTuple_SET_ITEM(result, i, value);
    }
    return result;
fail:
    Py_DECREF(result);
    return NULL;
}

typedef void *(*get_conn_socket_fn)(void *conn_rec);
typedef int (*os_sock_get_fn)(int *fd, void *apr_socket);
typedef void *(*brigade_create_fn)(void *pool, void *bucket_alloc);

/* The descriptor of a conn_rec's socket (open_fn: get_conn_socket,
 * os_sock_get, ...), or -1 when it has none or it is not a socket. */
static int
conn_socket_fd(void *open_fn[3], void *conn_rec, int verify)
{
    void *sock = ((get_conn_socket_fn)open_fn[0])(conn_rec);
    int fd = -1;
    struct stat st;

    if (sock == NULL || ((os_sock_get_fn)open_fn[1])(&fd, sock) != 0
        || fd < 0
        || (verify && (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))))
        return -1;
    return fd;
}

/* apache_open((get_conn_socket, os_sock_get, brigade_create), conn_rec,
 * pool, bucket_alloc, want_fd) -> (brigade, fd): one call for what a
 * connection's I/O needs at the start (three ctypes calls and an fstat
 * otherwise). fd is -1 when not wanted or not a socket. */
static PyObject *
speedups_apache_open(PyObject *self, PyObject *const *args,
                     Py_ssize_t nargs)
{
    void *fn[3], *conn_rec, *pool, *bucket_alloc, *bb;
    int want_fd, fd = -1;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "apache_open(fns, conn_rec, pool, bucket_alloc, "
                        "want_fd) takes 5 arguments");
        return NULL;
    }
    if (function_addresses(args[0], fn, 3) < 0)
        return NULL;
    if ((conn_rec = address(args[1], "conn_rec")) == NULL
        || (pool = address(args[2], "pool")) == NULL
        || (bucket_alloc = address(args[3], "bucket_alloc")) == NULL)
        return NULL;
    if ((want_fd = PyObject_IsTrue(args[4])) < 0)
        return NULL;
    if (want_fd)
        fd = conn_socket_fd(fn, conn_rec, 1);
    bb = ((brigade_create_fn)fn[2])(pool, bucket_alloc);
    if (bb == NULL) {
        PyErr_SetString(PyExc_MemoryError, "apr_brigade_create failed");
        return NULL;
    }
    return Py_BuildValue("(Ni)", PyLong_FromVoidPtr(bb), fd);
}

#ifdef __linux__  /* (eventfd) */

/* ---- SocketIO: apache_io.IOOwner's socket path in C ----------------- */

/* The transport of one WebSocket connection that has its own socket
 * (plain or TLS, not h2), with IOOwner's behaviour: every Apache call
 * under one lock that is never held while waiting for the client to send
 * (readers read without blocking and sleep in poll() on the socket and
 * a wake eventfd without it; writers write themselves, blocking without
 * the GIL); a write that waits longer than send_timeout for the lock, or
 * that the watchdog finds stuck (check_send_timeout), drops the
 * connection. State changes happen with the GIL held. */

/* close()'s reason, made once (module init): not one string per
 * connection */
static PyObject *request_ended;

#define INBOUND_LIMIT 262144
#define APR_SUCCESS 0

typedef struct {
    PyObject_HEAD
    void *fn[FN_COUNT];
    void *input, *output, *bb;
    int fd, wake_fd, tls, drained, eof, stopping, aborted, watched;
    int woken;                 /* wake_fd was signalled */
    char wrote;                /* a write was begun (T_BOOL) */
    char closed;               /* close() has returned (T_BOOL) */
    int readers;               /* threads inside read() */
    PyThread_type_lock lock;   /* held inside Apache calls */
    PyObject *error;           /* why the connection is dead, or NULL */
    PyObject *name;            /* for log lines */
    PyObject *on_first_write;  /* watchdog.watch(self), once */
    PyObject *release;         /* what it returned: release(self) at close */
    PyObject *on_drop;         /* on_drop(name, reason): its log line */
    double read_timeout, idle_timeout, send_timeout;  /* < 0: none */
    double write_started;      /* monotonic s of the write under way; 0 */
    PyObject *weakrefs;
} SocketIO;

static double
monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
wake(SocketIO *self)
{
    uint64_t one = 1;

    if (self->wake_fd < 0)
        return;
    self->woken = 1;
    if (write(self->wake_fd, &one, sizeof one) < 0) {
        /* full: a reader is woken already */
    }
}

/* Wake eventfds of closed SocketIOs that no reader polls and nothing
 * signalled: the next connection whose reader has to wait takes one
 * (no eventfd() and close() per connection). With the GIL. */
#define SPARE_WAKE_FDS 16
static int spare_wake_fd[SPARE_WAKE_FDS];
static int spare_wake_fds;

static int
take_wake_fd(void)
{
    if (spare_wake_fds > 0)
        return spare_wake_fd[--spare_wake_fds];
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static void
give_back_wake_fd(SocketIO *self)
{
    if (!self->woken && spare_wake_fds < SPARE_WAKE_FDS)
        spare_wake_fd[spare_wake_fds++] = self->wake_fd;
    else
        close(self->wake_fd);
    self->wake_fd = -1;
}

/* In a child after fork(): its spares are the parent's too. */
static void
forget_spare_wake_fds(void)
{
    while (spare_wake_fds > 0)
        close(spare_wake_fd[--spare_wake_fds]);
}

/* The connection is dead: keep the first reason (logged through on_drop
 * unless `quiet`), cut the socket (unblocks a write in progress), wake a
 * reader. With the GIL; 0, or -1 with an exception from on_drop. */
static int
drop(SocketIO *self, const char *reason, int quiet)
{
    PyObject *text, *r;
    int first = self->error == NULL;

    self->aborted = 1;
    if (first) {
        text = PyUnicode_FromString(reason);
        if (text == NULL)
            return -1;
        self->error = text;
    }
    /* After close() the socket is Apache's again: not ours to cut. */
    if (!self->closed)
        shutdown(self->fd, SHUT_RDWR);
    wake(self);
    if (first && !quiet && self->on_drop != Py_None) {
        r = PyObject_CallFunctionObjArgs(self->on_drop, self->name,
                                         self->error, NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

static int
raise_error(SocketIO *self)
{
    PyErr_SetObject(PyExc_OSError, self->error);
    return -1;
}

/* Take the lock: at once if free, else without the GIL for up to
 * `timeout` seconds (< 0: no limit). Whether it was taken. */
static int
take_lock(SocketIO *self, double timeout)
{
    PyLockStatus got;
    PY_TIMEOUT_T us = -1;  /* no limit (also for what it cannot count) */

    if (timeout >= 0 && timeout * 1e6 < (double)PY_TIMEOUT_MAX)
        us = (PY_TIMEOUT_T)(timeout * 1e6);

    if (PyThread_acquire_lock(self->lock, NOWAIT_LOCK))
        return 1;
    Py_BEGIN_ALLOW_THREADS
    got = PyThread_acquire_lock_timed(self->lock, us, 0);
    Py_END_ALLOW_THREADS
    return got == PY_LOCK_ACQUIRED;
}

/* Seconds left before *deadline (started `timeout` from now on the
 * first call), -1 without a timeout; TimeoutError once passed. */
static int
remaining(double timeout, double *deadline, double *left)
{
    double now;

    if (timeout < 0) {
        *left = -1;
        return 0;
    }
    now = monotonic();
    if (*deadline < 0)
        *deadline = now + timeout;
    *left = *deadline - now;
    if (*left <= 0) {
        char message[64];

        PyOS_snprintf(message, sizeof message, "no data within %.3f s",
                      timeout);
        PyErr_SetString(PyExc_TimeoutError, message);
        return -1;
    }
    return 0;
}

/* Sleep in poll() without the lock or the GIL until the socket is
 * readable, a wake-up or the deadline: 1 readable, 0 not, -1 error. */
static int
wait_readable(SocketIO *self, double timeout, double *deadline)
{
    struct pollfd fds[2];
    double left;
    int n, timeout_ms;

    if (remaining(timeout, deadline, &left) < 0)
        return -1;
    if (self->wake_fd < 0) {
        if (self->stopping) {
            PyErr_SetString(PyExc_OSError, "the WebSocket request has ended");
            return -1;
        }
        self->wake_fd = take_wake_fd();
        if (self->wake_fd < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    }
    fds[0].fd = self->fd;
    fds[1].fd = self->wake_fd;
    fds[0].events = fds[1].events = POLLIN;
    fds[0].revents = fds[1].revents = 0;
    timeout_ms = left < 0 || left * 1000 >= INT_MAX ? -1
                                                    : (int)ceil(left * 1000);
    Py_BEGIN_ALLOW_THREADS
    n = poll(fds, 2, timeout_ms);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        return PyErr_CheckSignals() < 0 ? -1 : 0;
    }
    if (fds[1].revents && self->stopping && self->error == NULL) {
        PyErr_SetString(PyExc_OSError, "the WebSocket request has ended");
        return -1;
    }
    return fds[0].revents != 0;
}

/* The socket polled readable and a read gave nothing: another thread
 * took the bytes, mod_ssl kept a partial record, or the client closed.
 * Decided under the lock (no read in between): a socket still readable
 * with no bytes in the kernel is at its end. */
static void
check_closed(SocketIO *self)
{
    struct pollfd p;
    int queued = 0, ready;

    take_lock(self, -1);
    p.fd = self->fd;
    p.events = POLLIN;
    p.revents = 0;
    ready = poll(&p, 1, 0) > 0;
    if (ready && ioctl(self->fd, FIONREAD, &queued) == 0 && queued == 0)
        self->eof = 1;
    PyThread_release_lock(self->lock);
}

static PyObject *
read_loop(SocketIO *self, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    double timeout = self->read_timeout, deadline = -1, left;
    int readable = 0, status, r;
    PyObject *data;

    if (size == -1 && PyErr_Occurred())
        return NULL;
    if (size > INBOUND_LIMIT)
        size = INBOUND_LIMIT;
    else if (size < 1)
        size = 1;
    for (;;) {
        if (self->eof)
            return PyBytes_FromStringAndSize(NULL, 0);
        if (self->error != NULL) {
            raise_error(self);
            return NULL;
        }
        if (self->drained && !readable) {
            /* The last read emptied Apache's buffers: wait first. */
            if ((r = wait_readable(self, timeout, &deadline)) < 0)
                return NULL;
            readable = r;
            continue;
        }
        /* A write may hold the connection until its client reads. */
        if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
            if (remaining(timeout, &deadline, &left) < 0)
                return NULL;
            if (!take_lock(self, left))
                continue;
        }
        if (self->error != NULL) {
            PyThread_release_lock(self->lock);
            continue;
        }
        data = read_bytes(self->fn, self->input, self->bb, 0, size, &status);
        /* Fewer than asked: Apache's buffers are empty (the core input
         * filter reads until the socket would block); mod_ssl may still
         * hold a decrypted record, so TLS is never taken as drained. */
        self->drained = status != APR_SUCCESS
            || (data != NULL && PyBytes_GET_SIZE(data) < size && !self->tls);
        PyThread_release_lock(self->lock);
        if (data == NULL)
            return NULL;
        if (PyBytes_GET_SIZE(data) > 0)
            return data;
        Py_DECREF(data);
        if (status != APR_SUCCESS && status != EAGAIN) {
            self->eof = 1;  /* end of input */
            readable = 0;
        } else if (readable) {
            check_closed(self);
            readable = 0;
        } else {
            if ((r = wait_readable(self, timeout, &deadline)) < 0)
                return NULL;
            readable = r;
        }
    }
}

static PyObject *
SocketIO_read(SocketIO *self, PyObject *arg)
{
    PyObject *data;

    self->readers++;
    data = read_loop(self, arg);
    self->readers--;
    return data;
}

static PyObject *
SocketIO_write(SocketIO *self, PyObject *arg)
{
    PyObject *data, *r;
    int status;
    char message[96];

    data = PyBytes_Check(arg) ? Py_NewRef(arg) : PyBytes_FromObject(arg);
    if (data == NULL)
        return NULL;
    if (PyBytes_GET_SIZE(data) == 0) {
        Py_DECREF(data);
        Py_RETURN_NONE;
    }
    if (!take_lock(self, self->send_timeout)) {
        Py_DECREF(data);
        PyOS_snprintf(message, sizeof message,
                      "the client did not read for %.1f s (send timeout): "
                      "connection dropped", self->send_timeout);
        if (drop(self, message, 0) < 0)
            return NULL;
        raise_error(self);
        return NULL;
    }
    if (self->error != NULL) {
        PyThread_release_lock(self->lock);
        Py_DECREF(data);
        self->aborted = 1;
        raise_error(self);
        return NULL;
    }
    if (!self->watched) {
        if (self->on_first_write != Py_None) {
            r = PyObject_CallOneArg(self->on_first_write, (PyObject *)self);
            if (r == NULL) {
                PyThread_release_lock(self->lock);
                Py_DECREF(data);
                return NULL;
            }
            if (r != Py_None)
                self->release = r;  /* (called by close) */
            else
                Py_DECREF(r);
        }
        self->watched = 1;
    }
    self->wrote = 1;
    self->write_started = monotonic();
    status = write_bytes(self->fn, self->output, self->bb,
                         PyBytes_AS_STRING(data),
                         (size_t)PyBytes_GET_SIZE(data));
    self->write_started = 0;
    PyThread_release_lock(self->lock);
    Py_DECREF(data);
    if (status != APR_SUCCESS) {
        if (self->error == NULL) {
            self->error = PyUnicode_FromFormat(
                "write failed (APR status %d)", status);
            if (self->error == NULL)
                return NULL;
        }
        self->aborted = 1;
        raise_error(self);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SocketIO_set_read_timeout(SocketIO *self, PyObject *arg)
{
    double t;

    if (arg == Py_None) {
        self->read_timeout = self->idle_timeout;
        Py_RETURN_NONE;
    }
    t = PyFloat_AsDouble(arg);
    if (t == -1.0 && PyErr_Occurred())
        return NULL;
    self->read_timeout = t < 0 ? 0 : t;
    Py_RETURN_NONE;
}

static PyObject *
SocketIO_shutdown(SocketIO *self, PyObject *unused)
{
    if (drop(self, "connection shut down", 1) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
SocketIO_check_send_timeout(SocketIO *self, PyObject *arg)
{
    double now = PyFloat_AsDouble(arg);
    char message[96];

    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (self->write_started > 0
        && now - self->write_started >= self->send_timeout) {
        PyOS_snprintf(message, sizeof message,
                      "the client did not read for %.1f s (send timeout): "
                      "connection dropped", self->send_timeout);
        if (drop(self, message, 0) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SocketIO_close(SocketIO *self, PyObject *const *args, Py_ssize_t nargs)
{
    double timeout = 0;

    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "close([timeout])");
        return NULL;
    }
    if (nargs == 1 && args[0] != Py_None) {
        timeout = PyFloat_AsDouble(args[0]);
        if (timeout == -1.0 && PyErr_Occurred())
            return NULL;
    }
    self->stopping = 1;
    if (self->readers > 0)
        wake(self);
    if (!take_lock(self, timeout > 0 ? timeout : 0.001)) {
        /* a write stuck: cut it (quietly: no callback that could fail),
         * then wait until it has left Apache */
        drop(self, "connection shut down", 1);
        take_lock(self, -1);
    }
    if (self->error == NULL)
        self->error = Py_NewRef(request_ended);  /* (set by module init) */
    self->closed = 1;
    PyThread_release_lock(self->lock);
    /* A reader still here wakes to the error. Its eventfd stays open and
     * signalled until the object goes (a reader's poll() must not be left
     * on a descriptor that was closed and reused); with no reader it is
     * closed now. */
    if (self->readers > 0) {
        wake(self);
    } else if (self->wake_fd >= 0) {
        give_back_wake_fd(self);
    }
    /* The watchdog lets go of a closed connection at once (not at its
     * next check, which would keep every connection of the interval). */
    if (self->release != NULL) {
        PyObject *release = self->release, *r;

        self->release = NULL;
        r = PyObject_CallOneArg(release, (PyObject *)self);
        Py_DECREF(release);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

/* The rest of a new SocketIO, after its functions and filters: 0, or -1
 * with an exception. */
static int
socket_io_setup(SocketIO *self, int fd, int tls, PyObject *name,
                double send_timeout, PyObject *idle, PyObject *first,
                PyObject *on_drop)
{
    self->fd = fd;
    self->wake_fd = -1;
    self->tls = tls;
    self->send_timeout = send_timeout;
    self->idle_timeout = -1;
    if (idle != Py_None) {
        self->idle_timeout = PyFloat_AsDouble(idle);
        if (self->idle_timeout == -1.0 && PyErr_Occurred())
            return -1;
    }
    self->read_timeout = self->idle_timeout;
    self->name = Py_NewRef(name);
    self->on_first_write = Py_NewRef(first);
    self->on_drop = Py_NewRef(on_drop);
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *
SocketIO_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fns", "input_filter", "output_filter",
                            "brigade", "fd", "tls", "name", "send_timeout",
                            "idle_timeout", "on_first_write", "on_drop",
                            NULL};
    PyObject *fns, *input, *output, *bb, *name, *idle, *first, *on_drop;
    int fd, tls;
    double send_timeout;
    SocketIO *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOipUdOOO", names, &fns,
                                     &input, &output, &bb, &fd, &tls, &name,
                                     &send_timeout, &idle, &first, &on_drop))
        return NULL;
    if (fd < 0) {
        PyErr_SetString(PyExc_ValueError, "fd must be a descriptor");
        return NULL;
    }
    self = (SocketIO *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fd = self->wake_fd = -1;  /* (dealloc closes wake_fd) */
    if (functions(fns, self->fn) < 0
        || (self->input = address(input, "input_filter")) == NULL
        || (self->output = address(output, "output_filter")) == NULL
        || (self->bb = address(bb, "brigade")) == NULL
        || socket_io_setup(self, fd, tls, name, send_timeout, idle, first,
                           on_drop) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
SocketIO_dealloc(SocketIO *self)
{
    if (self->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->lock != NULL)
        PyThread_free_lock(self->lock);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    Py_XDECREF(self->error);
    Py_XDECREF(self->name);
    Py_XDECREF(self->on_first_write);
    Py_XDECREF(self->release);
    Py_XDECREF(self->on_drop);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
SocketIO_get_write_started(SocketIO *self, void *closure)
{
    if (self->write_started > 0)
        return PyFloat_FromDouble(self->write_started);
    Py_RETURN_NONE;
}

static PyObject *
SocketIO_get_error(SocketIO *self, void *closure)
{
    return Py_NewRef(self->error != NULL ? self->error : Py_None);
}

static PyObject *
SocketIO_get_false(SocketIO *self, void *closure)
{
    Py_RETURN_FALSE;
}

static PyMethodDef SocketIO_methods[] = {
    {"read", (PyCFunction)SocketIO_read, METH_O,
     "read(size) -> bytes: up to size bytes; b'' at EOF; TimeoutError "
     "after the read timeout; OSError once the connection failed."},
    {"write", (PyCFunction)SocketIO_write, METH_O,
     "write(data): write and flush (blocking, without the GIL); OSError "
     "once the connection failed or after send_timeout."},
    {"set_read_timeout", (PyCFunction)SocketIO_set_read_timeout, METH_O,
     "set_read_timeout(seconds or None): bound reads; None: the idle "
     "timeout."},
    {"shutdown", (PyCFunction)SocketIO_shutdown, METH_NOARGS,
     "shutdown(): cut the connection (unblocks a write in progress)."},
    {"check_send_timeout", (PyCFunction)SocketIO_check_send_timeout, METH_O,
     "check_send_timeout(now): drop the connection when a write has taken "
     "send_timeout or longer."},
    {"close", (PyCFunction)(void (*)(void))SocketIO_close, METH_FASTCALL,
     "close([timeout]): wait for a write under way (cut after timeout); "
     "afterwards the connection is Apache's again."},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef SocketIO_members[] = {
    {"aborted", T_INT, offsetof(SocketIO, aborted), READONLY, NULL},
    {"fd", T_INT, offsetof(SocketIO, fd), READONLY, NULL},
    {"wake_fd", T_INT, offsetof(SocketIO, wake_fd), READONLY,
     "the eventfd a waiting reader polls, or -1 (none yet, or given up)"},
    {"closed", T_BOOL, offsetof(SocketIO, closed), READONLY,
     "close() has returned: the connection is Apache's again"},
    {"wrote", T_BOOL, offsetof(SocketIO, wrote), READONLY,
     "whether a write was begun (then no HTTP error response may follow)"},
    {"send_timeout", T_DOUBLE, offsetof(SocketIO, send_timeout), 0, NULL},
    {NULL, 0, 0, 0, NULL}
};

static PyGetSetDef SocketIO_getset[] = {
    {"write_started", (getter)SocketIO_get_write_started, NULL,
     "monotonic time the write under way began, or None", NULL},
    {"error", (getter)SocketIO_get_error, NULL,
     "why the connection is dead, or None", NULL},
    {"nonblocking_writes", (getter)SocketIO_get_false, NULL,
     "False: writes block until the client has taken the bytes", NULL},
    {NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject SocketIOType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mod_pywebsocket._speedups.SocketIO",
    .tp_basicsize = sizeof(SocketIO),
    .tp_dealloc = (destructor)SocketIO_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SocketIO(fns, input_filter, output_filter, brigade, fd, "
              "tls, name, send_timeout, idle_timeout, on_first_write, "
              "on_drop): apache_io.IOOwner for a connection with a socket. "
              "on_first_write(self) runs on the first write; what it "
              "returns, unless None, is called with self by close().",
    .tp_weaklistoffset = offsetof(SocketIO, weakrefs),
    .tp_methods = SocketIO_methods,
    .tp_members = SocketIO_members,
    .tp_getset = SocketIO_getset,
    .tp_new = SocketIO_new,
};

/* socket_io_open(conn_rec_at, conn_id, offsets, open_fns, fns, tls, name,
 * send_timeout, idle_timeout, on_first_write, on_drop) -> SocketIO or
 * None: apache_io.attach and owner_for in one call, for a process that
 * has checked the conn_rec layout once. conn_rec_at: where the
 * mod_python connection keeps its conn_rec pointer; offsets: (id, pool,
 * input_filters, output_filters, bucket_alloc) in conn_rec. None (and
 * nothing allocated) when the conn_rec's id is not conn_id or the
 * connection has no socket: the caller takes the long way, which says
 * why. */
static PyObject *
speedups_socket_io_open(PyObject *module, PyObject *const *args,
                        Py_ssize_t nargs)
{
    void *open_fn[3], *conn_rec, *bb, *field[5];
    char *base;
    long conn_id;
    Py_ssize_t i;
    int fd, tls;
    double send_timeout;
    SocketIO *self;

    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "socket_io_open takes 11 arguments");
        return NULL;
    }
    if ((base = address(args[0], "conn_rec_at")) == NULL)
        return NULL;
    conn_id = PyLong_AsLong(args[1]);
    if (conn_id == -1 && PyErr_Occurred())
        return NULL;
    if (!PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != 5) {
        PyErr_SetString(PyExc_TypeError, "offsets must be a tuple of 5");
        return NULL;
    }
    if (function_addresses(args[3], open_fn, 3) < 0)
        return NULL;
    if ((tls = PyObject_IsTrue(args[5])) < 0)
        return NULL;
    if (!PyUnicode_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "name must be str");
        return NULL;
    }
    send_timeout = PyFloat_AsDouble(args[7]);
    if (send_timeout == -1.0 && PyErr_Occurred())
        return NULL;
    conn_rec = *(void **)base;
    if (conn_rec == NULL)
        Py_RETURN_NONE;
    for (i = 0; i < 5; i++)
        if (word_at(conn_rec, PyTuple_GET_ITEM(args[2], i), &field[i]) < 0)
            return NULL;
    if ((long)(intptr_t)field[0] != conn_id || field[1] == NULL
        || field[2] == NULL || field[3] == NULL || field[4] == NULL)
        Py_RETURN_NONE;
    /* (no fstat: apache_open has seen this process's sockets) */
    if ((fd = conn_socket_fd(open_fn, conn_rec, 0)) < 0)
        Py_RETURN_NONE;
    self = (SocketIO *)SocketIOType.tp_alloc(&SocketIOType, 0);
    if (self == NULL)
        return NULL;
    self->fd = self->wake_fd = -1;  /* (dealloc closes wake_fd) */
    if (functions(args[4], self->fn) < 0
        || socket_io_setup(self, fd, tls, args[6], send_timeout, args[8],
                           args[9], args[10]) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    bb = ((brigade_create_fn)open_fn[2])(field[1], field[4]);
    if (bb == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "apr_brigade_create failed");
        return NULL;
    }
    self->input = field[2];
    self->output = field[3];
    self->bb = bb;
    return (PyObject *)self;
}

#endif  /* __linux__ */

static PyMethodDef speedups_methods[] = {
    {"mask", speedups_mask, METH_VARARGS,
     "mask(data, key) -> bytes: XOR data with the 4-byte key repeated."},
    {"mask_range", (PyCFunction)(void (*)(void))speedups_mask_range,
     METH_FASTCALL,
     "mask_range(data, start, end, key) -> bytes: mask(data[start:end], "
     "key), read where it lies."},
    {"apache_read", (PyCFunction)(void (*)(void))speedups_apache_read,
     METH_FASTCALL,
     "apache_read(fns, input_filter, brigade, block, size) -> (status, "
     "bytes): ap_get_brigade (READBYTES), apr_brigade_flatten, "
     "apr_brigade_cleanup, without the GIL."},
    {"apache_write", (PyCFunction)(void (*)(void))speedups_apache_write,
     METH_FASTCALL,
     "apache_write(fns, output_filter, brigade, data) -> status: "
     "apr_brigade_write, ap_fflush, apr_brigade_cleanup, without the GIL."},
#ifdef __linux__
    {"socket_io_open",
     (PyCFunction)(void (*)(void))speedups_socket_io_open, METH_FASTCALL,
     "socket_io_open(conn_rec_at, conn_id, offsets, open_fns, fns, tls, "
     "name, send_timeout, idle_timeout, on_first_write, on_drop) -> "
     "SocketIO or None: a connection's socket, a brigade and its SocketIO "
     "in one call."},
#endif
    {"peek", (PyCFunction)(void (*)(void))speedups_peek, METH_FASTCALL,
     "peek(address, offsets) -> tuple of ints: the pointer-sized words "
     "at address + each offset."},
    {"apache_open", (PyCFunction)(void (*)(void))speedups_apache_open,
     METH_FASTCALL,
     "apache_open(fns, conn_rec, pool, bucket_alloc, want_fd) -> "
     "(brigade, fd): the connection's socket (ap_get_conn_socket, "
     "apr_os_sock_get; -1 unless wanted and a socket) and a new brigade."},
    {NULL, NULL, 0, NULL}
};


static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "mod_pywebsocket._speedups",
    "C accelerators for mod_pywebsocket.", -1, speedups_methods
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;

    module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
#ifdef __linux__
    static int at_fork_set;

    if (!at_fork_set) {
        at_fork_set = 1;
        pthread_atfork(NULL, NULL, forget_spare_wake_fds);
    }
    if (request_ended == NULL) {
        request_ended = PyUnicode_InternFromString(
            "the WebSocket request has ended");
        if (request_ended == NULL) {
            Py_DECREF(module);
            return NULL;
        }
    }
    if (PyType_Ready(&SocketIOType) < 0
        || PyModule_AddObjectRef(module, "SocketIO",
                                 (PyObject *)&SocketIOType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    return module;
}
