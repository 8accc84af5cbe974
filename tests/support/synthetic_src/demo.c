/* demo._demo: needs libz.so.1, libfoo.so.1 (not bundled) and libbar.so.1 (bundled in demo.libs/),
 * dlopen()s libdlopened.so.2 by name and declares libnoted.so.3 in an FDO .note.dlopen note. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>

int foo_value(void);
int bar_value(void);
const char *zlibVersion(void);

/* https://systemd.io/ELF_DLOPEN_METADATA/: owner "FDO", type 0x407c0c0a, NUL-terminated JSON. */
__asm__(
    ".pushsection .note.dlopen,\"a\",%note\n"
    ".balign 4\n"
    ".long 4\n"
    ".long 2f - 1f\n"
    ".long 0x407c0c0a\n"
    ".asciz \"FDO\"\n"
    "1: .asciz \"[{\\\"soname\\\":[\\\"libnoted.so.3\\\"],\\\"feature\\\":\\\"noted\\\","
    "\\\"description\\\":\\\"test\\\",\\\"priority\\\":\\\"recommended\\\"}]\"\n"
    "2: .balign 4\n"
    ".popsection\n");

static PyObject *demo_value(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(foo_value() + bar_value());
}

static PyObject *demo_zlib_version(PyObject *self, PyObject *unused)
{
    return PyUnicode_FromString(zlibVersion());
}

static PyObject *demo_has_dlopened(PyObject *self, PyObject *unused)
{
    void *handle = dlopen("libdlopened.so.2", RTLD_NOW);
    if (handle != NULL) {
        dlclose(handle);
    }
    return PyBool_FromLong(handle != NULL);
}

static PyMethodDef demo_methods[] = {
    {"value", demo_value, METH_NOARGS, "foo_value() + bar_value()"},
    {"zlib_version", demo_zlib_version, METH_NOARGS, "zlibVersion()"},
    {"has_dlopened", demo_has_dlopened, METH_NOARGS, "whether libdlopened.so.2 can be dlopen()ed"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef demo_module = {PyModuleDef_HEAD_INIT, "_demo", NULL, -1, demo_methods};

PyMODINIT_FUNC PyInit__demo(void) { return PyModule_Create(&demo_module); }
