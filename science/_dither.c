/* Quantised floats restored: the FITS tiled-image convention's subtractive dithering, undone.
 *
 * fpack stores a float CCD as integers q with, per tile, ZSCALE and ZZERO, and
 * (SUBTRACTIVE_DITHER_1 or _2) a dither r taken from a fixed sequence of
 * 10,000 uniform numbers: the float is (q - r + 0.5) * ZSCALE + ZZERO, computed
 * in double and rounded to float.  Tile t (counting from 0) starts the sequence
 * at seed index (ZDITHER0 + t - 1) mod 10,000, at position
 * (int)(sequence[seed] * 500); past the end, the next seed gives the position.
 * A pixel equal to ZBLANK is NaN and still uses up a dither; with
 * SUBTRACTIVE_DITHER_2, a 4-byte q of -2147483646 is an exact 0.0.
 * The sequence is Park and Miller's minimal standard generator (a = 16807,
 * m = 2^31 - 1, from seed 1), each value divided by m and kept as a float;
 * its 10,000th state is 1043618065, which fill_sequence checks.
 *
 * These are cfitsio's rules (imcompress.c: fits_init_randoms and the
 * unquantize_i*r4 family, which astropy calls once per tile); applied here to
 * every tile of a CCD in one call.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_buffers.h"

#define N_RANDOM 10000
#define ZERO_VALUE (-2147483646)

static float sequence[N_RANDOM];

static int fill_sequence(void) {
    const double a = 16807.0, m = 2147483647.0;
    double seed = 1.0;
    for (int i = 0; i < N_RANDOM; i++) {
        const double temp = a * seed;
        seed = temp - m * (int)(temp / m);
        sequence[i] = (float)(seed / m);
    }
    return seed == 1043618065.0 ? 0 : -1;
}

/* Tile by tile; `input` holds integers of `bytepix` bytes (1: unsigned, as cfitsio reads them). */
static inline __attribute__((always_inline)) void restore(const void *input, float *out, Py_ssize_t pixels,
                                                          Py_ssize_t tile_pixels, long first_row, const double *scales,
                                                          const double *zeros, int zero_value_rule, int nullcheck,
                                                          long null, const int bytepix) {
    const uint8_t *in8 = input;
    const int16_t *in16 = input;
    const int32_t *in32 = input;
    for (Py_ssize_t first = 0, t = 0; first < pixels; first += tile_pixels, t++) {
        const Py_ssize_t end = first + tile_pixels < pixels ? first + tile_pixels : pixels;
        const double scale = scales[t], zero = zeros[t];
        int seed = (int)((first_row + t - 1) % N_RANDOM);
        int next = (int)(sequence[seed] * 500);
        /* In runs that do not reach the sequence's end, so that the loop has no dependency from one
         * pixel to the next and the compiler vectorises it (the same arithmetic, element by element). */
        for (Py_ssize_t i = first; i < end;) {
            const Py_ssize_t run = end - i < N_RANDOM - next ? end - i : N_RANDOM - next;
            const float *dither = sequence + next;
            for (Py_ssize_t k = 0; k < run; k++) {
                const long q = bytepix == 1 ? (long)in8[i + k] : bytepix == 2 ? (long)in16[i + k] : (long)in32[i + k];
                const float value = (float)(((double)q - dither[k] + 0.5) * scale + zero);
                out[i + k] = (nullcheck && q == null) ? NAN : (zero_value_rule && q == ZERO_VALUE) ? 0.0f : value;
            }
            i += run;
            next += (int)run;
            if (next == N_RANDOM) {
                if (++seed == N_RANDOM) seed = 0;
                next = (int)(sequence[seed] * 500);
            }
        }
    }
}

static PyObject *unquantise(PyObject *self, PyObject *args) {
    PyObject *stored_o, *scales_o, *zeros_o, *blank_o, *out_o;
    Py_ssize_t tile_pixels;
    long first_row;
    int method, bytepix;
    if (!PyArg_ParseTuple(args, "OinlOOiOO", &stored_o, &bytepix, &tile_pixels, &first_row, &scales_o, &zeros_o,
                          &method, &blank_o, &out_o))
        return NULL;
    if (bytepix != 1 && bytepix != 2 && bytepix != 4) {
        PyErr_Format(PyExc_ValueError, "BYTEPIX %d: quantised tiles hold 1, 2 or 4 bytes a pixel", bytepix);
        return NULL;
    }
    if (method != 1 && method != 2) {
        PyErr_Format(PyExc_ValueError, "dither method %d: SUBTRACTIVE_DITHER_1 (1) or _2 (2)", method);
        return NULL;
    }
    if (tile_pixels < 1 || first_row < 1) {
        PyErr_Format(PyExc_ValueError, "%zd pixels a tile, ZDITHER0 %ld: both must be at least 1", tile_pixels,
                     first_row);
        return NULL;
    }
    long null = 0;
    const int nullcheck = blank_o != Py_None;
    if (nullcheck && (null = PyLong_AsLong(blank_o)) == -1 && PyErr_Occurred()) return NULL;
    Views v = {.held = 0};
    const void *stored;
    const double *scales, *zeros;
    float *out;
    if (take(&v, stored_o, "stored", integer_formats(bytepix), bytepix, -1, 0, 0, (void **)&stored) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t pixels = v.views[0].len / bytepix, tiles = (pixels + tile_pixels - 1) / tile_pixels;
    if (take(&v, scales_o, "scales", F64, 8, tiles, 0, 0, (void **)&scales) < 0
        || take(&v, zeros_o, "zeros", F64, 8, tiles, 0, 0, (void **)&zeros) < 0
        || take(&v, out_o, "out", F32, 4, pixels, 1, 0, (void **)&out) < 0) {
        release(&v);
        return NULL;
    }
    const int zero_value_rule = method == 2 && bytepix == 4; /* cfitsio's 1- and 2-byte versions skip it */
    Py_BEGIN_ALLOW_THREADS
    if (bytepix == 1)
        restore(stored, out, pixels, tile_pixels, first_row, scales, zeros, zero_value_rule, nullcheck, null, 1);
    else if (bytepix == 2)
        restore(stored, out, pixels, tile_pixels, first_row, scales, zeros, zero_value_rule, nullcheck, null, 2);
    else
        restore(stored, out, pixels, tile_pixels, first_row, scales, zeros, zero_value_rule, nullcheck, null, 4);
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"unquantise", unquantise, METH_VARARGS,
     "unquantise(stored, bytepix, tile_pixels, zdither0, scales, zeros, method, blank, out)\n\n"
     "Restore a subtractively dithered CCD: stored holds its integers (bytepix bytes each) tile\n"
     "after tile, tile_pixels to a tile (the last what is left); scales and zeros are each tile's\n"
     "ZSCALE and ZZERO (float64); method is 1 or 2 (SUBTRACTIVE_DITHER_1 or _2); blank is ZBLANK\n"
     "or None.  out (float32, as many pixels) receives the floats."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_dither", "Subtractive dithering undone for every tile of a CCD (see the C source).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__dither(void) {
    if (fill_sequence() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "the dither sequence does not end where cfitsio's does");
        return NULL;
    }
    return PyModule_Create(&module);
}
