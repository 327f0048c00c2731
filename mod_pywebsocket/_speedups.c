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
