// consumer._consumer: C++ (libstdc++.so.6, GLIBCXX_ versions) needing libprov.so.1 from the provider wheel.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string>

extern "C" int prov_value(void);

static PyObject *consumer_describe(PyObject *, PyObject *)
{
    std::string text = "prov=" + std::to_string(prov_value());
    return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

static PyMethodDef consumer_methods[] = {
    {"describe", consumer_describe, METH_NOARGS, "\"prov=\" + str(prov_value())"},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef consumer_module = {PyModuleDef_HEAD_INIT, "_consumer", nullptr, -1, consumer_methods};

PyMODINIT_FUNC PyInit__consumer(void) { return PyModule_Create(&consumer_module); }
