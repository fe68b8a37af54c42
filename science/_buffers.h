/* numpy arrays taken through the buffer protocol, checked for item size, kind and length.
 *
 * Shared by the science package's C modules: with it they need no numpy headers
 * to build, and a wrongly typed array is a Python error rather than a read of
 * the wrong memory.
 */

#ifndef CANFAR_CATALOGUE_BUFFERS_H
#define CANFAR_CATALOGUE_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* Buffers held for the length of one call, released together. */
typedef struct {
    Py_buffer views[32];
    int held;
} Views;

static inline void release(Views *v) {
    for (int i = 0; i < v->held; i++) PyBuffer_Release(&v->views[i]);
    v->held = 0;
}

/* A C-contiguous buffer of `count` items of `itemsize` bytes whose format is one of `formats`;
 * None gives NULL when `optional`.  `name` is for the error message. */
static inline int take(Views *v, PyObject *obj, const char *name, const char *formats, Py_ssize_t itemsize,
                       Py_ssize_t count, int writable, int optional, void **out) {
    if (obj == Py_None && optional) {
        *out = NULL;
        return 0;
    }
    if (v->held == (int)(sizeof v->views / sizeof v->views[0])) {
        PyErr_SetString(PyExc_RuntimeError, "too many arrays in one call");
        return -1;
    }
    Py_buffer *view = &v->views[v->held];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    v->held++;
    const char *format = view->format ? view->format : "B";
    if (format[0] == '<' || format[0] == '=' || format[0] == '@') format++;
    if (view->itemsize != itemsize || strlen(format) != 1 || !strchr(formats, format[0])) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes with format in '%s', got '%s' (%zd bytes)",
                     name, itemsize, formats, view->format ? view->format : "B", view->itemsize);
        return -1;
    }
    if (count >= 0 && view->len != count * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items, got %zd", name, count, view->len / itemsize);
        return -1;
    }
    *out = view->buf;
    return 0;
}

#define F32 "f"
#define F64 "d"
#define I64 "lq"
#define I32 "i"
#define BOOL "?bB"

/* The formats of an integer of `bytepix` bytes (1, 2 or 4), signed or not. */
static inline const char *integer_formats(int bytepix) { return bytepix == 1 ? "bB" : bytepix == 2 ? "hH" : "iI"; }

#endif
