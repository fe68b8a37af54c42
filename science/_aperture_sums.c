/* Sums over the pixels of apertures, with source-extractor's neighbour masking.
 *
 * The pixel loops of MAG_AUTO (canfar_catalogue.science.photometry): the Kron
 * moments within KRON_NSIG, then the flux within the Kron ellipse; and of
 * FLUX_APER (canfar_catalogue.science.aperture), source-extractor's
 * computeaperflux.  Written in numpy they made some thirty passes over a
 * million index and value arrays per CCD; here each pixel is visited once per
 * aperture and nothing is allocated.
 *
 * The rules are photom.c's (source-extractor 2.25), in its types:
 *  - the centre is float; a pixel is in an ellipse when
 *    ((cxx dx) dx + (cyy dy) dy) + (cxy dx) dy <= k2 in float, dx = (float)x - mx;
 *  - a circle's pixel counts whole within r - 0.75, not at all beyond r + 0.75,
 *    and in between by the share of a 5 x 5 grid of points inside, summed in float;
 *  - masked pixels (_source_pixels.h) take their mirror's value,
 *    (int)((double)(2 mx) + 0.49999 - x): 2 mx in float, the rest in double;
 *  - sums are in double, pixel by pixel, rows then columns.
 * Built with -ffp-contract=off, so that no multiply-add is fused.
 *
 * Arrays arrive through the buffer protocol (_buffers.h).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_buffers.h"
#include "_source_pixels.h"

typedef struct {
    const float *mx, *my, *cxx, *cyy, *cxy, *k2;
    const int64_t *xmin, *xmax, *ymin, *ymax;
    Py_ssize_t n;
} Apertures;

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
    PyObject *mask_t, *ap_t, *use_o, *noise_t, *out_t;
    if (!PyArg_ParseTuple(args, "O!O!OO!O!", &PyTuple_Type, &mask_t, &PyTuple_Type, &ap_t, &use_o,
                          &PyTuple_Type, &noise_t, &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    Apertures a;
    const uint8_t *use;
    NoiseTerms noise;
    double *tv, *sum_variance;
    int64_t *area, *areab;
    PyObject *o[4];
    if (take_mask(&v, mask_t, &m) < 0 || take_apertures(&v, ap_t, &a) < 0
        || take(&v, use_o, "use", BOOL, 1, a.n, 0, 0, (void **)&use) < 0
        || take_noise(&v, noise_t, &m, &noise) < 0
        || !PyArg_ParseTuple(out_t, "OOOO", &o[0], &o[1], &o[2], &o[3])
        || take(&v, o[0], "tv", F64, 8, a.n, 1, 0, (void **)&tv) < 0
        || take(&v, o[1], "area", I64, 8, a.n, 1, 0, (void **)&area) < 0
        || take(&v, o[2], "areab", I64, 8, a.n, 1, 0, (void **)&areab) < 0
        || take(&v, o[3], "pixel_variance", F64, 8, a.n, 1, 0, (void **)&sum_variance) < 0) {
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
        const double mirror_x = (double)(2.0f * a.mx[i]) + 0.49999, mirror_y = (double)(2.0f * a.my[i]) + 0.49999;
        const int32_t id = (int32_t)(i + 1);
        double s_tv = 0.0, s_var = 0.0;
        int64_t n_in = 0, n_masked = 0;
        FOR_EACH_PIXEL_INSIDE(a, m, i, at, r2, {
            Py_ssize_t source = at;
            double value;
            n_in++;
            if (masked(&m, at, id)) {
                n_masked++;
                source = mirror_of(&m, at % m.width, at / m.width, mirror_x, mirror_y, id);
                value = source >= 0 ? (double)m.pixels[source] : 0.0;
            } else {
                value = (double)m.pixels[at];
            }
            s_tv += value;
            if (noise.variance) {
                const double var = pixel_variance(&noise, source);
                const double poisson = (noise.per_pixel_gain && noise.gain > 0 && value > 0)
                    ? value / noise.gain * var / noise.backnoise2 : 0.0;
                s_var += var + poisson;
            }
        });
        tv[i] = s_tv;
        area[i] = n_in;
        areab[i] = n_masked;
        sum_variance[i] = s_var;
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

#define APER_OVERSAMP 5

/* computeaperflux for one source and one circle of radius raper: the flux, its variance (without
 * the flux's own Poisson term when pixels do not add theirs), and whether the image cut it. */
static int circle_sum(const Mask *m, const NoiseTerms *noise, int32_t id, float mx, float my, float raper,
                      const float *shares, double *flux, double *variance) {
    const float raper2 = raper * raper;
    const float rintlim = (float)(raper - 0.75);
    const float rintlim2 = rintlim > 0.0 ? rintlim * rintlim : 0.0f;
    const float rextlim2 = (float)((raper + 0.75) * (raper + 0.75));
    const float scale = (float)(1.0 / APER_OVERSAMP);
    const float offset = (float)(0.5 * (scale - 1.0));
    const double m2x = (double)(2 * mx) + 0.49999, m2y = (double)(2 * my) + 0.49999;
    Box box;
    const int cut = circle_box(m, mx - raper, mx + raper, my - raper, my + raper, &box); /* float differences */
    double tv = 0.0, sigtv = 0.0;
    for (Py_ssize_t y = box.ymin; y < box.ymax; y++) {
        const float dy = (float)y - my;
        for (Py_ssize_t x = box.xmin; x < box.xmax; x++) {
            const float dx = (float)x - mx;
            const float r2 = dx * dx + dy * dy;
            if (!(r2 < rextlim2)) continue;
            const float locarea = r2 > rintlim2
                ? shares[points_inside(dx + offset, dy + offset, scale, raper2, APER_OVERSAMP)] : 1.0f;
            const Py_ssize_t at = y * m->width + x;
            Py_ssize_t source = at;
            if (masked(m, at, id)) source = mirror_of(m, x, y, m2x, m2y, id);
            const double pix = source >= 0 ? (double)m->pixels[source] : 0.0;
            const double var = pixel_variance(noise, source);
            sigtv += var * locarea;
            tv += locarea * pix;
            if (noise->per_pixel_gain && pix > 0.0 && noise->gain > 0.0)
                sigtv += pix / noise->gain * var / noise->backnoise2;
        }
    }
    *flux = tv;
    *variance = sigtv;
    return cut;
}

static PyObject *circle_sums(PyObject *self, PyObject *args) {
    PyObject *mask_t, *centres_t, *radii_o, *noise_t, *out_t, *mx_o, *my_o, *o[3];
    if (!PyArg_ParseTuple(args, "O!O!OO!O!", &PyTuple_Type, &mask_t, &PyTuple_Type, &centres_t, &radii_o,
                          &PyTuple_Type, &noise_t, &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    NoiseTerms noise;
    const float *mx, *my, *radii;
    double *flux, *variance;
    uint8_t *cut;
    if (take_mask(&v, mask_t, &m) < 0 || !PyArg_ParseTuple(centres_t, "OO", &mx_o, &my_o)
        || take(&v, mx_o, "mx", F32, 4, -1, 0, 0, (void **)&mx) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t n = v.views[v.held - 1].len / 4;
    if (take(&v, my_o, "my", F32, 4, n, 0, 0, (void **)&my) < 0
        || take(&v, radii_o, "radii", F32, 4, -1, 0, 0, (void **)&radii) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t napers = v.views[v.held - 1].len / 4;
    if (take_noise(&v, noise_t, &m, &noise) < 0
        || !PyArg_ParseTuple(out_t, "OOO", &o[0], &o[1], &o[2])
        || take(&v, o[0], "flux", F64, 8, n * napers, 1, 0, (void **)&flux) < 0
        || take(&v, o[1], "variance", F64, 8, n * napers, 1, 0, (void **)&variance) < 0
        || take(&v, o[2], "cut", BOOL, 1, n, 1, 0, (void **)&cut) < 0) {
        release(&v);
        return NULL;
    }
    float shares[APER_OVERSAMP * APER_OVERSAMP + 1];
    point_shares(APER_OVERSAMP, shares);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int any_cut = 0;
        for (Py_ssize_t k = 0; k < napers; k++)
            any_cut |= circle_sum(&m, &noise, (int32_t)(i + 1), mx[i], my[i], radii[k], shares,
                                  &flux[i * napers + k], &variance[i * napers + k]);
        cut[i] = (uint8_t)any_cut;
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
     "auto_sums(mask, apertures, use, noise, (tv, area, areab, pixel_variance))\n\n"
     "Per aperture where use is true: the sum of the values its pixels measure (masked ones\n"
     "replaced by their mirror, or 0), how many pixels, how many of them masked, and, with a\n"
     "variance map, the sum of their variances plus, with per_pixel_gain, their own Poisson terms.\n"
     "noise is Noise.for_sums(): (variance, gain, backnoise2, per_pixel_gain)."},
    {"circle_sums", circle_sums, METH_VARARGS,
     "circle_sums(mask, (mx, my), radii, noise, (flux, variance, cut))\n\n"
     "computeaperflux for each source (float32 centres) and each circle of radii (float32): the flux\n"
     "and its variance, shaped (sources, circles), the variance without the flux's Poisson term unless\n"
     "per_pixel_gain adds each pixel's; and whether the image cut any of a source's circles."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_aperture_sums",
    "Sums over the pixels of elliptical apertures, with source-extractor's neighbour masking (see the C source).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__aperture_sums(void) { return PyModule_Create(&module); }
