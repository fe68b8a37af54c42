/* FLUX_RADIUS and the half-light radius: source-extractor 2.25's growth curve (makeavergrowth, growth.c).
 *
 * Each source's pixels within rlim + 1.5 of its barycentre (rlim = 6 A_IMAGE,
 * or PHOT_AUTOAPERS' first value when larger) are shared out over 64 rings of
 * width rlim / 64; a pixel closer than 0.75 to a ring's boundary is split 5 x 5.
 * Masked pixels (_source_pixels.h) take their mirror's value through the
 * barycentre.  The rings' cumulative sums are the growth curve, and a radius is
 * where it reaches a fraction of FLUX_AUTO, interpolated within its ring and
 * capped at rlim.  The half-light radius that sizes the XWIN window is the same
 * at 0.5, taken positive and at least GROWTH_MINHLRAD.
 *
 * The arithmetic is makeavergrowth's: double throughout, the same operations
 * in the same order (including its reading of the ring before the last when
 * the fraction is never reached), so that the radii are source-extractor's.
 * Built with -ffp-contract=off: no multiply-add is fused.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_buffers.h"
#include "_source_pixels.h"

#define GROWTH_NSTEP 64
#define GROWTH_OVERSAMP 5
#define GROWTH_MINHLRAD 0.5

/* The radius at which the growth curve reaches tv, as makeavergrowth reads it. */
static double radius_at(const double *growth, double step, double tv) {
    const int n = GROWTH_NSTEP - 1;
    const double *g = growth - 1;
    int i;
    for (i = 0; i < n && *(++g) < tv; i++)
        ;
    if (!i) return step * (growth[0] != 0.0 ? tv / growth[0] : 0.0);
    const double dg = g[0] - g[-1];
    return step * (dg != 0.0 ? i + (tv - g[-1]) / dg : i);
}

/* The growth curve of the source `id` with barycentre (mx, my) out to rlim; returns whether the
 * image cut its box. */
static int grow(const Mask *m, int32_t id, double mx, double my, double rlim, double *growth) {
    const double raper = rlim + 1.5; /* margin for interpolation */
    const double rextlim2 = raper * raper;
    const double stepdens = GROWTH_NSTEP / rlim, step = 1 / stepdens;
    const double prevbinmargin = 0.75, nextbinmargin = step - 0.75;
    const double scale = 1.0 / GROWTH_OVERSAMP, scale2 = scale * scale, offset = 0.5 * (scale - 1.0);
    const double m2x = 2 * mx + 0.49999, m2y = 2 * my + 0.49999;
    /* 0 <= fmod(r, step) < step: with rings narrower than 1.5 every pixel is close to a boundary */
    const int always_split = nextbinmargin < prevbinmargin;
    Box box;
    const int cut = circle_box(m, mx - raper, mx + raper, my - raper, my + raper, &box);
    for (int k = 0; k < GROWTH_NSTEP; k++) growth[k] = 0.0;
    for (Py_ssize_t y = box.ymin; y < box.ymax; y++) {
        const double dy = (double)y - my;
        for (Py_ssize_t x = box.xmin; x < box.xmax; x++) {
            const double dx = (double)x - mx;
            const double r2 = dx * dx + dy * dy;
            if (!(r2 < rextlim2)) continue;
            const Py_ssize_t at = y * m->width + x;
            Py_ssize_t source = at;
            if (masked(m, at, id)) source = mirror_of(m, x, y, m2x, m2y, id);
            const double pix = source >= 0 ? (double)m->pixels[source] : 0.0;
            const double r = sqrt(r2);
            double d = 0.0;
            if (!always_split) d = fmod(r, step);
            if (always_split || d < prevbinmargin || d > nextbinmargin) {
                double xs[GROWTH_OVERSAMP], ys[GROWTH_OVERSAMP];
                xs[0] = dx + offset;
                ys[0] = dy + offset;
                for (int k = 1; k < GROWTH_OVERSAMP; k++) {
                    xs[k] = xs[k - 1] + scale;
                    ys[k] = ys[k - 1] + scale;
                }
                int ring[GROWTH_OVERSAMP * GROWTH_OVERSAMP];
                for (int sy = 0; sy < GROWTH_OVERSAMP; sy++) {
                    const double dy2 = ys[sy] * ys[sy];
                    for (int sx = 0; sx < GROWTH_OVERSAMP; sx++)
                        ring[sy * GROWTH_OVERSAMP + sx] = (int)(sqrt(xs[sx] * xs[sx] + dy2) * stepdens);
                }
                const double share = scale2 * pix;
                for (int k = 0; k < GROWTH_OVERSAMP * GROWTH_OVERSAMP; k++)
                    if (ring[k] < GROWTH_NSTEP) growth[ring[k]] += share;
            } else {
                const int j = (int)(r * stepdens);
                if (j < GROWTH_NSTEP) growth[j] += pix;
            }
        }
    }
    double sum = 0.0;
    for (int k = 0; k < GROWTH_NSTEP; k++) {
        growth[k] += sum;
        sum = growth[k];
    }
    return cut;
}

static PyObject *radii(PyObject *self, PyObject *args) {
    PyObject *mask_t, *sources_t, *out_t, *o[6], *fractions_o;
    if (!PyArg_ParseTuple(args, "O!O!OO!", &PyTuple_Type, &mask_t, &PyTuple_Type, &sources_t, &fractions_o,
                          &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    const double *x, *y, *rlim, *flux, *fractions;
    const int64_t *ids;
    double *radius, *half_light;
    uint8_t *cut;
    if (take_mask(&v, mask_t, &m) < 0
        || !PyArg_ParseTuple(sources_t, "OOOOO", &o[0], &o[1], &o[2], &o[3], &o[4])
        || take(&v, o[0], "x", F64, 8, -1, 0, 0, (void **)&x) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t n = v.views[v.held - 1].len / 8;
    if (take(&v, o[1], "y", F64, 8, n, 0, 0, (void **)&y) < 0
        || take(&v, o[2], "rlim", F64, 8, n, 0, 0, (void **)&rlim) < 0
        || take(&v, o[3], "flux", F64, 8, n, 0, 0, (void **)&flux) < 0
        || take(&v, o[4], "ids", I64, 8, n, 0, 0, (void **)&ids) < 0
        || take(&v, fractions_o, "fractions", F64, 8, -1, 0, 0, (void **)&fractions) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t nfrac = v.views[v.held - 1].len / 8;
    if (!PyArg_ParseTuple(out_t, "OOO", &o[0], &o[1], &o[2])
        || take(&v, o[0], "radius", F64, 8, n * nfrac, 1, 0, (void **)&radius) < 0
        || take(&v, o[1], "half_light", F64, 8, n, 1, 0, (void **)&half_light) < 0
        || take(&v, o[2], "cut", BOOL, 1, n, 1, 0, (void **)&cut) < 0) {
        release(&v);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (!(rlim[i] > 0.0) || !isfinite(x[i]) || !isfinite(y[i])) {
            PyErr_Format(PyExc_ValueError, "source %zd: its growth curve needs a positive radius and a position", i);
            release(&v);
            return NULL;
        }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        double growth[GROWTH_NSTEP];
        const double step = 1 / (GROWTH_NSTEP / rlim[i]);
        cut[i] = (uint8_t)grow(&m, (int32_t)(ids[i] + 1), x[i], y[i], rlim[i], growth);
        for (Py_ssize_t k = 0; k < nfrac; k++) {
            const double r = radius_at(growth, step, fractions[k] * flux[i]);
            radius[i * nfrac + k] = r > rlim[i] ? rlim[i] : r;
        }
        double hl = fabs(radius_at(growth, step, 0.5 * flux[i]));
        if (hl > rlim[i]) hl = rlim[i];
        half_light[i] = hl < GROWTH_MINHLRAD ? GROWTH_MINHLRAD : hl;
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"radii", radii, METH_VARARGS,
     "radii(mask, (x, y, rlim, flux, ids), fractions, (radius, half_light, cut))\n\n"
     "makeavergrowth for each source: 0-based barycentre x, y, growth-curve radius rlim and FLUX_AUTO\n"
     "(float64), and its index in the segmentation map's numbering less one (int64).  mask is\n"
     "NeighbourMask.for_sums().  Fills each source's radius at each of fractions of its flux\n"
     "(sources x fractions, float64), its half-light radius, and whether the image cut its box."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_growth",
    "source-extractor's growth curves: FLUX_RADIUS and the half-light radius (see the C source).", -1, methods,
};

PyMODINIT_FUNC PyInit__growth(void) { return PyModule_Create(&module); }
