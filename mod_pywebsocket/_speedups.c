/* Optional accelerator for mod_pywebsocket: XOR masking (RFC 6455 5.3).
 * Built when a C compiler is present; masking.py falls back to pure
 * Python otherwise. */
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

static PyMethodDef speedups_methods[] = {
    {"mask", speedups_mask, METH_VARARGS,
     "mask(data, key) -> bytes: XOR data with the 4-byte key repeated."},
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
