/* The detection filter: a CCD correlated with a small kernel, as sep and source-extractor filter it.
 *
 * canfar_catalogue.science.detection_filter decides the passes (a separable
 * kernel as a column pass then a row pass, any other as one 2-D pass); this
 * module runs them one output row at a time, so that the intermediate rows
 * stay in the CPU cache and no CCD-sized temporary is made.  Each row's taps
 * are summed in one pass over the row, in registers, where every tap is inside
 * the image (a pass per tap read and wrote the row once for each); the few
 * pixels at the edges are summed one at a time.
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

#include "_buffers.h"

#define MAX_PASSES 4

typedef struct {
    const float *weights;
    Py_ssize_t height, width;
} Pass;

/* One tap of a pass: an input row, where it is read from relative to the output (x + shift), its weight. */
typedef struct {
    const float *in;
    Py_ssize_t shift;
    float w;
} Tap;

/* out[x] = 0.0f + in_0[x + s_0] * w_0 + in_1[x + s_1] * w_1 + ..., added in tap order, a tap whose
 * input x + s falls outside [0, n) left out: the per-tap sums, one pixel at a time. */
static inline float one_pixel(const Tap *taps, int ntaps, Py_ssize_t x, Py_ssize_t n) {
    float sum = 0.0f;
    for (int t = 0; t < ntaps; t++) {
        const Py_ssize_t xx = x + taps[t].shift;
        if (xx >= 0 && xx < n) sum += taps[t].in[xx] * taps[t].w;
    }
    return sum;
}

/* The same sums, where every tap is inside, with the tap count known to the compiler: one pass over
 * the row, its sums in registers, instead of one pass per tap. */
#define FUSED(K)                                                                                        \
    static void fused##K(float *restrict out, const Tap *taps, Py_ssize_t lo, Py_ssize_t hi) {         \
        const float *in[K];                                                                             \
        float w[K];                                                                                     \
        for (int t = 0; t < K; t++) in[t] = taps[t].in + taps[t].shift, w[t] = taps[t].w;              \
        for (Py_ssize_t x = lo; x < hi; x++) {                                                          \
            float sum = 0.0f;                                                                           \
            for (int t = 0; t < K; t++) sum += in[t][x] * w[t];                                         \
            out[x] = sum;                                                                               \
        }                                                                                               \
    }
FUSED(1)
FUSED(2)
FUSED(3)
FUSED(4)
FUSED(5)
FUSED(6)
FUSED(9)
#undef FUSED

/* The fused loop for each tap count that has one (NULL: none). */
static void (*const FUSED_BY_TAPS[])(float *restrict, const Tap *, Py_ssize_t, Py_ssize_t) = {
    NULL, fused1, fused2, fused3, fused4, fused5, fused6, NULL, NULL, fused9,
};

/* One output row of a pass from its taps (weights of 0 already left out). */
static void sum_taps(float *restrict out, const Tap *taps, int ntaps, Py_ssize_t n) {
    Py_ssize_t lo = 0, hi = n; /* where every tap is inside */
    for (int t = 0; t < ntaps; t++) {
        if (-taps[t].shift > lo) lo = -taps[t].shift;
        if (n - taps[t].shift < hi) hi = n - taps[t].shift;
    }
    if (hi < lo) hi = lo;
    void (*fused)(float *restrict, const Tap *, Py_ssize_t, Py_ssize_t) =
        ntaps < (int)(sizeof FUSED_BY_TAPS / sizeof FUSED_BY_TAPS[0]) ? FUSED_BY_TAPS[ntaps] : NULL;
    if (!fused) lo = hi = n;
    for (Py_ssize_t x = 0; x < lo && x < n; x++) out[x] = one_pixel(taps, ntaps, x, n);
    if (fused) fused(out, taps, lo, hi);
    for (Py_ssize_t x = hi; x < n; x++) out[x] = one_pixel(taps, ntaps, x, n);
}

/* The taps of a kernel of kh x kw weights over the rows `rows` (NULL: above or below the image). */
static int taps_of(Tap *taps, const float *weights, Py_ssize_t kh, Py_ssize_t kw, const float *const *rows) {
    int ntaps = 0;
    for (Py_ssize_t j = 0; j < kh; j++) {
        if (!rows[j]) continue;
        for (Py_ssize_t i = 0; i < kw; i++) {
            const float w = weights[j * kw + i];
            if (w != 0.0f) taps[ntaps++] = (Tap){rows[j], i - kw / 2, w};
        }
    }
    return ntaps;
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
    Tap *taps = NULL;
    const float **inputs = NULL;
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
    Py_ssize_t most = passes[0].height * passes[0].width; /* taps in a pass */
    for (Py_ssize_t p = 1; p < npasses; p++) most = passes[p].width > most ? passes[p].width : most;
    rows = malloc(2 * (size_t)width * sizeof(float));
    taps = malloc((size_t)most * sizeof(Tap));
    inputs = malloc((size_t)passes[0].height * sizeof(float *));
    if (!rows || !taps || !inputs) {
        PyErr_NoMemory();
        goto fail;
    }

    Py_BEGIN_ALLOW_THREADS
    const Py_ssize_t kh = passes[0].height, kw = passes[0].width, ry = kh / 2;
    for (Py_ssize_t y = 0; y < height; y++) {
        for (Py_ssize_t j = 0; j < kh; j++) {
            const Py_ssize_t yy = y + j - ry;
            inputs[j] = yy >= 0 && yy < height ? pixels + yy * width : NULL;
        }
        float *row = (npasses == 1 && !compare) ? (float *)out + y * width : rows;
        sum_taps(row, taps, taps_of(taps, passes[0].weights, kh, kw, inputs), width);
        for (Py_ssize_t p = 1; p < npasses; p++) {
            float *next = (p == npasses - 1 && !compare) ? (float *)out + y * width : (row == rows ? rows + width : rows);
            const float *input = row;
            sum_taps(next, taps, taps_of(taps, passes[p].weights, 1, passes[p].width, &input), width);
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
    free(taps);
    free(inputs);
    release(&v);
    Py_RETURN_NONE;

fail:
    free(rows);
    free(taps);
    free(inputs);
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
