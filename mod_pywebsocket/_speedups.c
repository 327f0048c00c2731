/* Optional accelerators for mod_pywebsocket: XOR masking (RFC 6455 5.3)
 * and, under Apache, one call per read or write of a connection's filter
 * chain (apache_io.py). Built when a C compiler is present; the Python
 * code falls back to pure Python / ctypes otherwise.
 *
 * This file does not link against httpd or APR: the Apache functions are
 * called through addresses Python resolved (ctypes) and passes in. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

static PyObject *
speedups_mask(PyObject *self, PyObject *args)
{
    Py_buffer data, key;
    PyObject *result;
    const unsigned char *src;
    unsigned char *dst;
    Py_ssize_t i = 0, n;
    uint64_t key64;
    unsigned char k[4];

    if (!PyArg_ParseTuple(args, "y*y*:mask", &data, &key))
        return NULL;
    if (key.len != 4) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes");
        return NULL;
    }
    memcpy(k, key.buf, 4);
    PyBuffer_Release(&key);
    n = data.len;
    result = PyBytes_FromStringAndSize(NULL, n);
    if (result == NULL) {
        PyBuffer_Release(&data);
        return NULL;
    }
    src = (const unsigned char *)data.buf;
    dst = (unsigned char *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    {
        unsigned char k8[8];
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
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
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

/* fns: a tuple of FN_COUNT function addresses, in FN_* order. */
static int
functions(PyObject *fns, void *out[FN_COUNT])
{
    Py_ssize_t i;

    if (!PyTuple_Check(fns) || PyTuple_GET_SIZE(fns) != FN_COUNT) {
        PyErr_Format(PyExc_TypeError,
                     "fns must be a tuple of %d function addresses",
                     FN_COUNT);
        return -1;
    }
    for (i = 0; i < FN_COUNT; i++) {
        out[i] = address(PyTuple_GET_ITEM(fns, i), "a function address");
        if (out[i] == NULL)
            return -1;
    }
    return 0;
}

static PyObject *
speedups_apache_read(PyObject *self, PyObject *const *args,
                     Py_ssize_t nargs)
{
    void *fn[FN_COUNT], *filter, *bb;
    Py_ssize_t size;
    int block, status;
    size_t got;
    PyObject *data, *result;

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
    /* READBYTES returns at most `size` bytes: flattened straight into a
     * bytes object of that size, shrunk afterwards. Nothing else refers
     * to it yet, so it may be filled without the GIL. */
    data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL)
        return NULL;
    got = 0;
    Py_BEGIN_ALLOW_THREADS
    status = ((get_brigade_fn)fn[FN_GET_BRIGADE])(
        filter, bb, AP_MODE_READBYTES,
        block ? APR_BLOCK_READ : APR_NONBLOCK_READ, (int64_t)size);
    if (status == 0) {
        got = (size_t)size;
        status = ((flatten_fn)fn[FN_FLATTEN])(bb, PyBytes_AS_STRING(data),
                                              &got);
        if (got > (size_t)size)  /* never, by APR's contract */
            got = (size_t)size;
    }
    ((cleanup_fn)fn[FN_CLEANUP])(bb);
    Py_END_ALLOW_THREADS
    if (got == 0) {
        Py_DECREF(data);
        data = PyBytes_FromStringAndSize(NULL, 0);
        if (data == NULL)
            return NULL;
    } else if ((Py_ssize_t)got < size
               && _PyBytes_Resize(&data, (Py_ssize_t)got) < 0) {
        return NULL;
    }
    result = Py_BuildValue("(iN)", status, data);
    return result;
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
    /* Blocks until the client has taken the bytes (or Apache's Timeout):
     * without the GIL, like a ctypes call. */
    Py_BEGIN_ALLOW_THREADS
    status = ((brigade_write_fn)fn[FN_BRIGADE_WRITE])(
        bb, NULL, NULL, (const char *)data.buf, (size_t)data.len);
    if (status == 0)
        status = ((fflush_fn)fn[FN_FFLUSH])(filter, bb);
    ((cleanup_fn)fn[FN_CLEANUP])(bb);
    Py_END_ALLOW_THREADS
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
    Py_ssize_t i, n, offset;
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
        offset = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[1], i));
        if (offset == -1 && PyErr_Occurred())
            goto fail;
        if (offset < 0 || offset % (Py_ssize_t)sizeof(void *) != 0) {
            PyErr_SetString(PyExc_ValueError,
                            "offsets must be aligned and not negative");
            goto fail;
        }
        value = PyLong_FromVoidPtr(*(void **)(base + offset));
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

/* apache_open((get_conn_socket, os_sock_get, brigade_create), conn_rec,
 * pool, bucket_alloc, want_fd) -> (brigade, fd): one call for what a
 * connection's I/O needs at the start (three ctypes calls and an fstat
 * otherwise). fd is -1 when not wanted or not a socket. */
static PyObject *
speedups_apache_open(PyObject *self, PyObject *const *args,
                     Py_ssize_t nargs)
{
    void *fn[3], *conn_rec, *pool, *bucket_alloc, *sock, *bb;
    int want_fd, fd = -1;
    Py_ssize_t i;
    struct stat st;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "apache_open(fns, conn_rec, pool, bucket_alloc, "
                        "want_fd) takes 5 arguments");
        return NULL;
    }
    if (!PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "fns must be a tuple of 3 function addresses");
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        fn[i] = address(PyTuple_GET_ITEM(args[0], i), "a function address");
        if (fn[i] == NULL)
            return NULL;
    }
    if ((conn_rec = address(args[1], "conn_rec")) == NULL
        || (pool = address(args[2], "pool")) == NULL
        || (bucket_alloc = address(args[3], "bucket_alloc")) == NULL)
        return NULL;
    if ((want_fd = PyObject_IsTrue(args[4])) < 0)
        return NULL;
    if (want_fd) {
        sock = ((get_conn_socket_fn)fn[0])(conn_rec);
        if (sock == NULL || ((os_sock_get_fn)fn[1])(&fd, sock) != 0
            || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            fd = -1;
    }
    bb = ((brigade_create_fn)fn[2])(pool, bucket_alloc);
    if (bb == NULL) {
        PyErr_SetString(PyExc_MemoryError, "apr_brigade_create failed");
        return NULL;
    }
    return Py_BuildValue("(Ni)", PyLong_FromVoidPtr(bb), fd);
}

static PyMethodDef speedups_methods[] = {
    {"mask", speedups_mask, METH_VARARGS,
     "mask(data, key) -> bytes: XOR data with the 4-byte key repeated."},
    {"apache_read", (PyCFunction)(void (*)(void))speedups_apache_read,
     METH_FASTCALL,
     "apache_read(fns, input_filter, brigade, block, size) -> (status, "
     "bytes): ap_get_brigade (READBYTES), apr_brigade_flatten, "
     "apr_brigade_cleanup, without the GIL."},
    {"apache_write", (PyCFunction)(void (*)(void))speedups_apache_write,
     METH_FASTCALL,
     "apache_write(fns, output_filter, brigade, data) -> status: "
     "apr_brigade_write, ap_fflush, apr_brigade_cleanup, without the GIL."},
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
    return PyModule_Create(&speedups_module);
}
