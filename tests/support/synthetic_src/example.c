/* wheelfix_example._example: needs libz.so.1 and the bundled libexdep.so.1 via $ORIGIN RUNPATH. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

int exdep_value(void);
const char *zlibVersion(void);

static PyObject *example_value(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(exdep_value());
}

static PyObject *example_zlib_version(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(zlibVersion());
}

static PyMethodDef example_methods[] = {
    {"value", example_value, METH_NOARGS, "exdep_value()"},
    {"zlib_version", example_zlib_version, METH_NOARGS, "zlibVersion()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef example_module = {PyModuleDef_HEAD_INIT, "_example", NULL, -1, example_methods};

PyMODINIT_FUNC PyInit__example(void) { return PyModule_Create(&example_module); }
