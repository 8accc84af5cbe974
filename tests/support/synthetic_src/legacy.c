/* legacy._legacy: old-style DT_RPATH $ORIGIN/.libs, needs libleg.so.0 and libm.so.6. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

int leg_value(void);

static PyObject *legacy_value(PyObject *self, PyObject *arg)
{
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return PyFloat_FromDouble(leg_value() * cos(x));
}

static PyMethodDef legacy_methods[] = {
    {"value", legacy_value, METH_O, "leg_value() * cos(x)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef legacy_module = {PyModuleDef_HEAD_INIT, "_legacy", NULL, -1, legacy_methods};

PyMODINIT_FUNC PyInit__legacy(void) { return PyModule_Create(&legacy_module); }
