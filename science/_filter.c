/* The detection filter: a CCD correlated with a small kernel, as sep and source-extractor filter it.
 *
 * canfar_catalogue.science.detection_filter decides the passes (a separable
 * kernel as a column pass then a row pass, any other as one 2-D pass); this
 * module runs them one output row at a time, so that the intermediate rows
 * stay in the CPU cache and no CCD-sized temporary is made.
 *
 * Out-of-image pixels count as zero.  Each output pixel is 0.0f plus, tap after
 * tap in row-major order, input * weight in float32, taps of weight 0 skipped:
 * numpy's shifted multiply-adds over a zero-padded copy give the same floats
 * (a sum that starts at +0 never becomes -0, so skipping a zero term changes
 * nothing).  Built with -ffp-contract=off, so that no multiply-add is fused.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_buffers.h"

#define MAX_PASSES 4

typedef struct {
    const float *weights;
    Py_ssize_t height, width;
} Pass;

/* out[x] = sum over the kernel row's taps of in[x + i - rx] * w, added onto out (zero outside [0, n)). */
static void add_row(float *restrict out, const float *restrict in, Py_ssize_t n, const float *weights, Py_ssize_t kw) {
    const Py_ssize_t rx = kw / 2;
    for (Py_ssize_t i = 0; i < kw; i++) {
        const float w = weights[i];
        if (w == 0.0f) continue;
        const Py_ssize_t shift = i - rx;
        const Py_ssize_t lo = shift < 0 ? -shift : 0, hi = shift > 0 ? n - shift : n;
        for (Py_ssize_t x = lo; x < hi; x++) out[x] += in[x + shift] * w;
    }
}

static PyObject *correlate(PyObject *self, PyObject *args) {
    PyObject *image_o, *passes_t, *threshold_o, *out_o;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "OnO!OO", &image_o, &width, &PyTuple_Type, &passes_t, &threshold_o, &out_o))
        return NULL;
    Views v = {.held = 0};
    Pass passes[MAX_PASSES];
    const float *pixels, *levels = NULL;
    void *out;
    float level = 0.0f, *rows = NULL;
    const Py_ssize_t npasses = PyTuple_GET_SIZE(passes_t);
    if (take(&v, image_o, "image", F32, 4, -1, 0, 0, (void **)&pixels) < 0) goto fail;
    const Py_ssize_t size = v.views[0].len / 4;
    if (width <= 0 || size % width) {
        PyErr_SetString(PyExc_ValueError, "image: not a whole number of rows of the given width");
        goto fail;
    }
    const Py_ssize_t height = size / width;
    if (npasses < 1 || npasses > MAX_PASSES) {
        PyErr_Format(PyExc_ValueError, "passes: between 1 and %d, got %zd", MAX_PASSES, npasses);
        goto fail;
    }
    for (Py_ssize_t p = 0; p < npasses; p++) {
        PyObject *weights;
        Pass *pass = &passes[p];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(passes_t, p), "Onn", &weights, &pass->height, &pass->width)) goto fail;
        if (pass->height < 1 || pass->width < 1 || pass->height % 2 == 0 || pass->width % 2 == 0
            || (p > 0 && pass->height != 1)) {
            PyErr_Format(PyExc_ValueError, "pass %zd: an odd-sized kernel, one row high after the first pass", p);
            goto fail;
        }
        if (take(&v, weights, "weights", F32, 4, pass->height * pass->width, 0, 0, (void **)&pass->weights) < 0)
            goto fail;
    }
    const int compare = threshold_o != Py_None;
    if (compare && PyFloat_Check(threshold_o))
        level = (float)PyFloat_AS_DOUBLE(threshold_o);  /* numpy compares float32 pixels with a Python float in float32 */
    else if (compare && take(&v, threshold_o, "threshold", F32, 4, size, 0, 0, (void **)&levels) < 0)
        goto fail;
    if (take(&v, out_o, "out", compare ? BOOL : F32, compare ? 1 : 4, size, 1, 0, &out) < 0) goto fail;
    rows = malloc(2 * (size_t)width * sizeof(float));
    if (!rows) {
        PyErr_NoMemory();
        goto fail;
    }

    Py_BEGIN_ALLOW_THREADS
    const Py_ssize_t kh = passes[0].height, kw = passes[0].width, ry = kh / 2;
    for (Py_ssize_t y = 0; y < height; y++) {
        float *row = (npasses == 1 && !compare) ? (float *)out + y * width : rows;
        memset(row, 0, width * sizeof(float));
        for (Py_ssize_t j = 0; j < kh; j++) {
            const Py_ssize_t yy = y + j - ry;
            if (yy >= 0 && yy < height) add_row(row, pixels + yy * width, width, passes[0].weights + j * kw, kw);
        }
        for (Py_ssize_t p = 1; p < npasses; p++) {
            float *next = (p == npasses - 1 && !compare) ? (float *)out + y * width : (row == rows ? rows + width : rows);
            memset(next, 0, width * sizeof(float));
            add_row(next, row, width, passes[p].weights, passes[p].width);
            row = next;
        }
        if (compare) {
            uint8_t *above = (uint8_t *)out + y * width;
            if (levels)
                for (Py_ssize_t x = 0; x < width; x++) above[x] = row[x] > levels[y * width + x];
            else
                for (Py_ssize_t x = 0; x < width; x++) above[x] = row[x] > level;
        }
    }
    Py_END_ALLOW_THREADS
    free(rows);
    release(&v);
    Py_RETURN_NONE;

fail:
    free(rows);
    release(&v);
    return NULL;
}

static PyMethodDef methods[] = {
    {"correlate", correlate, METH_VARARGS,
     "correlate(image, width, passes, threshold, out)\n\n"
     "Correlate a float32 image (flat, rows of `width`) with each pass's kernel in turn, zero\n"
     "outside it; passes is a tuple of (float32 weights, height, width), every pass after the\n"
     "first one row high.  With threshold None, out (float32) receives the filtered image; with\n"
     "a float or a float32 map, out (bool) receives filtered > threshold."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_filter",
    "The detection filter's correlation, one output row at a time (see the C source).", -1, methods,
};

PyMODINIT_FUNC PyInit__filter(void) { return PyModule_Create(&module); }
