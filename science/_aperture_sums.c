/* Sums over the pixels of elliptical apertures, with source-extractor's neighbour masking.
 *
 * The pixel loops of MAG_AUTO (canfar_catalogue.science.photometry): the Kron
 * moments within KRON_NSIG, then the flux within the Kron ellipse.  Written in
 * numpy they made some thirty passes over a million index and value arrays per
 * CCD and cost more than sep's own background; here each pixel is visited once
 * per aperture and nothing is allocated.
 *
 * Every rule is photometry.py's, which says where it comes from:
 *  - a pixel is in an aperture when ((cxx dx) dx + (cyy dy) dy) + (cxy dx) dy <= k2,
 *    in float32 (dx, dy from the pixel's index converted to float, minus the centre);
 *  - it is masked for object i when it is blank, or its weight is bad, or it is
 *    in the masking map and the segmentation map does not give it to i (ids are i + 1);
 *  - with CORRECT a masked pixel takes the value of its mirror,
 *    (long)((double)(2 mx + 0.49999f) - x), when that lies in the image and is
 *    not masked itself; otherwise it counts as 0;
 *  - sums are in double, pixel by pixel, rows then columns, as numpy's bincount
 *    over the same pixels in the same order adds them: the results are the same
 *    to the bit.
 * Built with -ffp-contract=off, so that no multiply-add is fused.
 *
 * Arrays arrive through the buffer protocol (_buffers.h).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_buffers.h"

typedef struct {
    const float *pixels;
    const int32_t *seg;
    const uint8_t *masking, *blank, *bad; /* each may be NULL */
    Py_ssize_t width, height;
    int correct;
} Mask;

typedef struct {
    const float *mx, *my, *cxx, *cyy, *cxy, *k2;
    const int64_t *xmin, *xmax, *ymin, *ymax;
    Py_ssize_t n;
} Apertures;

static int take_mask(Views *v, PyObject *tuple, Mask *m) {
    PyObject *pixels, *seg, *masking, *blank, *bad;
    if (!PyArg_ParseTuple(tuple, "OOOOOnp", &pixels, &seg, &masking, &blank, &bad, &m->width, &m->correct))
        return -1;
    const float *p;
    if (take(v, pixels, "pixels", F32, 4, -1, 0, 0, (void **)&p) < 0) return -1;
    Py_ssize_t size = v->views[v->held - 1].len / 4;
    if (m->width <= 0 || size % m->width) {
        PyErr_SetString(PyExc_ValueError, "pixels: not a whole number of rows of the given width");
        return -1;
    }
    m->pixels = p;
    m->height = size / m->width;
    if (take(v, seg, "segmap", I32, 4, size, 0, 0, (void **)&m->seg) < 0
        || take(v, masking, "masking", BOOL, 1, size, 0, 1, (void **)&m->masking) < 0
        || take(v, blank, "blank", BOOL, 1, size, 0, 1, (void **)&m->blank) < 0
        || take(v, bad, "bad", BOOL, 1, size, 0, 1, (void **)&m->bad) < 0)
        return -1;
    return 0;
}

static int take_apertures(Views *v, PyObject *tuple, Apertures *a) {
    PyObject *o[10];
    if (!PyArg_ParseTuple(tuple, "OOOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9]))
        return -1;
    if (take(v, o[0], "mx", F32, 4, -1, 0, 0, (void **)&a->mx) < 0) return -1;
    a->n = v->views[v->held - 1].len / 4;
    static const char *floats[] = {"my", "cxx", "cyy", "cxy", "k2"};
    const float **f[] = {&a->my, &a->cxx, &a->cyy, &a->cxy, &a->k2};
    for (int i = 0; i < 5; i++)
        if (take(v, o[1 + i], floats[i], F32, 4, a->n, 0, 0, (void **)f[i]) < 0) return -1;
    static const char *ints[] = {"xmin", "xmax", "ymin", "ymax"};
    const int64_t **b[] = {&a->xmin, &a->xmax, &a->ymin, &a->ymax};
    for (int i = 0; i < 4; i++)
        if (take(v, o[6 + i], ints[i], I64, 8, a->n, 0, 0, (void **)b[i]) < 0) return -1;
    return 0;
}

static inline int masked(const Mask *m, Py_ssize_t at, int32_t id) {
    return (m->blank && m->blank[at]) || (m->bad && m->bad[at])
        || (m->masking && m->masking[at] && m->seg[at] != id);
}

/* 0, or -1 with the error set when a box in use is not clipped to the image. */
static int check_boxes(const Apertures *a, const Mask *m, const uint8_t *use) {
    for (Py_ssize_t i = 0; i < a->n; i++) {
        if (use && !use[i]) continue;
        if (a->xmin[i] < 0 || a->xmax[i] > m->width || a->ymin[i] < 0 || a->ymax[i] > m->height) {
            PyErr_Format(PyExc_ValueError, "aperture %zd: its box is not clipped to the image", i);
            return -1;
        }
    }
    return 0;
}

/* Runs the body (the last argument) for each pixel of aperture i's box whose centre is in it,
 * rows then columns, with `at` its flat index and `r2` its float32
 * ((cxx dx) dx + (cyy dy) dy) + (cxy dx) dy: the one loop both passes make. */
#define FOR_EACH_PIXEL_INSIDE(a, m, i, at, r2, ...)                                              \
    do {                                                                                          \
        const float cxx_ = (a).cxx[i], cyy_ = (a).cyy[i], cxy_ = (a).cxy[i], k2_ = (a).k2[i];     \
        const float mx_ = (a).mx[i], my_ = (a).my[i];                                             \
        for (int64_t y_ = (a).ymin[i]; y_ < (a).ymax[i]; y_++) {                                  \
            const float dy_ = (float)y_ - my_;                                                    \
            const float yterm_ = (cyy_ * dy_) * dy_;                                              \
            const Py_ssize_t row_ = (Py_ssize_t)y_ * (m).width;                                   \
            for (int64_t x_ = (a).xmin[i]; x_ < (a).xmax[i]; x_++) {                              \
                const float dx_ = (float)x_ - mx_;                                                \
                const float r2 = ((cxx_ * dx_) * dx_ + yterm_) + (cxy_ * dx_) * dy_;              \
                if (!(r2 <= k2_)) continue;                                                       \
                const Py_ssize_t at = row_ + x_;                                                  \
                __VA_ARGS__                                                                       \
            }                                                                                     \
        }                                                                                         \
    } while (0)

static PyObject *kron_moments(PyObject *self, PyObject *args) {
    PyObject *mask_t, *ap_t, *out_t;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &mask_t, &PyTuple_Type, &ap_t, &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    Apertures a;
    double *r1, *v1;
    int64_t *area, *areab;
    PyObject *o[4];
    if (take_mask(&v, mask_t, &m) < 0 || take_apertures(&v, ap_t, &a) < 0
        || !PyArg_ParseTuple(out_t, "OOOO", &o[0], &o[1], &o[2], &o[3])
        || take(&v, o[0], "r1", F64, 8, a.n, 1, 0, (void **)&r1) < 0
        || take(&v, o[1], "v1", F64, 8, a.n, 1, 0, (void **)&v1) < 0
        || take(&v, o[2], "area", I64, 8, a.n, 1, 0, (void **)&area) < 0
        || take(&v, o[3], "areab", I64, 8, a.n, 1, 0, (void **)&areab) < 0) {
        release(&v);
        return NULL;
    }
    if (check_boxes(&a, &m, NULL) < 0) {
        release(&v);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.n; i++) {
        const int32_t id = (int32_t)(i + 1);
        double s_r1 = 0.0, s_v1 = 0.0;
        int64_t n_in = 0, n_masked = 0;
        FOR_EACH_PIXEL_INSIDE(a, m, i, at, r2, {
            if (masked(&m, at, id)) {
                n_masked++;
            } else {
                const double value = (double)m.pixels[at];
                s_r1 += (double)sqrtf(r2) * value;
                s_v1 += value;
                n_in++;
            }
        });
        r1[i] = s_r1;
        v1[i] = s_v1;
        area[i] = n_in;
        areab[i] = n_masked;
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

static PyObject *auto_sums(PyObject *self, PyObject *args) {
    PyObject *mask_t, *ap_t, *use_o, *noise_t, *out_t, *variance_o;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!", &PyTuple_Type, &mask_t, &PyTuple_Type, &ap_t, &use_o,
                          &PyTuple_Type, &noise_t, &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    Apertures a;
    const uint8_t *use;
    const float *variance;
    double poisson_gain, backnoise2, *tv, *pixel_variance;
    int64_t *area, *areab;
    PyObject *o[4];
    if (take_mask(&v, mask_t, &m) < 0 || take_apertures(&v, ap_t, &a) < 0
        || take(&v, use_o, "use", BOOL, 1, a.n, 0, 0, (void **)&use) < 0
        || !PyArg_ParseTuple(noise_t, "Odd", &variance_o, &poisson_gain, &backnoise2)
        || take(&v, variance_o, "variance", F32, 4, m.width * m.height, 0, 1, (void **)&variance) < 0
        || !PyArg_ParseTuple(out_t, "OOOO", &o[0], &o[1], &o[2], &o[3])
        || take(&v, o[0], "tv", F64, 8, a.n, 1, 0, (void **)&tv) < 0
        || take(&v, o[1], "area", I64, 8, a.n, 1, 0, (void **)&area) < 0
        || take(&v, o[2], "areab", I64, 8, a.n, 1, 0, (void **)&areab) < 0
        || take(&v, o[3], "pixel_variance", F64, 8, a.n, 1, 0, (void **)&pixel_variance) < 0) {
        release(&v);
        return NULL;
    }
    if (check_boxes(&a, &m, use) < 0) {
        release(&v);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < a.n; i++) {
        if (!use[i]) continue;
        const double mirror_x = (double)(2.0f * a.mx[i] + 0.49999f), mirror_y = (double)(2.0f * a.my[i] + 0.49999f);
        const int32_t id = (int32_t)(i + 1);
        double s_tv = 0.0, s_var = 0.0;
        int64_t n_in = 0, n_masked = 0;
        FOR_EACH_PIXEL_INSIDE(a, m, i, at, r2, {
            Py_ssize_t source = at;
            double value;
            n_in++;
            if (masked(&m, at, id)) {
                n_masked++;
                source = -1;
                value = 0.0;
                if (m.correct) {
                    const Py_ssize_t x = at % m.width, y = at / m.width;
                    const int64_t x2 = (int64_t)(mirror_x - (double)x), y2 = (int64_t)(mirror_y - (double)y);
                    if (x2 >= 0 && x2 < m.width && y2 >= 0 && y2 < m.height) {
                        const Py_ssize_t mirror = (Py_ssize_t)y2 * m.width + x2;
                        if (!masked(&m, mirror, id)) {
                            source = mirror;
                            value = (double)m.pixels[mirror];
                        }
                    }
                }
            } else {
                value = (double)m.pixels[at];
            }
            s_tv += value;
            if (variance) {
                const double var = source >= 0 ? (double)variance[source] : 0.0;
                const double poisson = (poisson_gain > 0 && value > 0) ? value / poisson_gain * var / backnoise2 : 0.0;
                s_var += var + poisson;
            }
        });
        tv[i] = s_tv;
        area[i] = n_in;
        areab[i] = n_masked;
        pixel_variance[i] = s_var;
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"kron_moments", kron_moments, METH_VARARGS,
     "kron_moments(mask, apertures, (r1, v1, area, areab))\n\n"
     "Per aperture: the sums of sqrt(r2) * value and of value over its unmasked pixels, how many\n"
     "those are, and how many masked pixels it holds.  mask is (pixels, segmap, masking, blank,\n"
     "bad, width, correct); apertures is (mx, my, cxx, cyy, cxy, k2, xmin, xmax, ymin, ymax),\n"
     "boxes clipped to the image.  The outputs are filled in place."},
    {"auto_sums", auto_sums, METH_VARARGS,
     "auto_sums(mask, apertures, use, (variance, poisson_gain, backnoise2), (tv, area, areab, pixel_variance))\n\n"
     "Per aperture where use is true: the sum of the values its pixels measure (masked ones\n"
     "replaced by their mirror, or 0), how many pixels, how many of them masked, and, with a\n"
     "variance map, the sum of their variances plus their own Poisson terms when poisson_gain > 0."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_aperture_sums",
    "Sums over the pixels of elliptical apertures, with source-extractor's neighbour masking (see the C source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__aperture_sums(void) { return PyModule_Create(&module); }
