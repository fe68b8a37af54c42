/* XWIN_IMAGE, YWIN_IMAGE and their error sums: source-extractor 2.25's compute_winpos (winpos.c).
 *
 * Each source's window starts at its barycentre and moves, at most
 * WINPOS_NITERMAX times, by twice the centroid of its pixels weighted by a
 * Gaussian of sigma = 2 FLUX_RADIUS(0.5) / 2.35 within 4 sigma, stopping after
 * a step shorter than WINPOS_STEPMIN.  Pixels near the window's edge are
 * oversampled 11 x 11.  Masked pixels (_source_pixels.h) take their mirror's
 * value through the window's centre of that step.  The last step's sums give
 * the window's flux, second moments and, with errors asked for, each pixel's
 * variance times its weight squared.
 *
 * A window whose flux is not positive, whose moments are not an ellipse's, or
 * that wandered more than a pixel on both axes and out of the isophotal
 * ellipse (win_flag) is not kept: the position goes back to the barycentre,
 * and the caller falls back to the isophotal errors.
 *
 * The arithmetic is compute_winpos's, type for type: float where it declares
 * float (dx, dy, r2, the oversampled area, the weight from expf), double where
 * it declares double (the centre, the sums), so that a window ends where
 * source-extractor's ends.  Built with -ffp-contract=off: no multiply-add is fused.
 *
 * canfar_catalogue.science.windowed turns the sums into SNR_WIN and the error ellipse.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_buffers.h"
#include "_source_pixels.h"

#define WINPOS_NITERMAX 16
#define WINPOS_NSIG 4
#define WINPOS_OVERSAMP 11
#define WINPOS_STEPMIN 0.0001
#define WINPOS_FAC 2.0

/* Where a source's window starts: its barycentre (0-based, as sep gives it) and isophotal ellipse. */
typedef struct {
    double x, y;
    float cxx, cyy, cxy;
} Start;

typedef struct {
    double x, y;                            /* XWIN_IMAGE, YWIN_IMAGE (1-based) */
    double tv, esum, emx2, emy2, emxy;      /* the last step's sums */
    uint8_t cut, flag;                      /* the image cut a window; compute_winpos's win_flag */
} Window;

/* The window's constants, from its sigma, as compute_winpos declares them. */
typedef struct {
    float invtwosig2, raper, raper2, rintlim2, rextlim2, scale, offset;
    double invgain;
    const float *shares; /* point_shares() of WINPOS_OVERSAMP */
} Shape;

/* One step's sums over the window centred at (mx, my). */
typedef struct {
    double tv, dxpos, dypos;        /* every step */
    double esum, emx2, emy2, emxy;  /* the last step, with errors */
    double mx2, my2, mxy;           /* the last step */
    int cut;
} Sums;

/* One pass over the window's pixels, rows then columns, as compute_winpos makes it.  Only the
 * last step's moments and errors are kept, so the steps before it (last = 0) leave them out: the
 * centroid's sums are the same additions in the same order either way. */
static inline void window_sums(const Mask *m, const NoiseTerms *noise, int32_t id, const Shape *sh, double mx,
                               double my, int last, int errors, Sums *s) {
    const Py_ssize_t width = m->width;
    const double mx2ph = mx * 2.0 + 0.49999, my2ph = my * 2.0 + 0.49999;
    Box box;
    s->cut = circle_box(m, mx - sh->raper, mx + sh->raper, my - sh->raper, my + sh->raper, &box);
    double tv = 0.0, dxpos = 0.0, dypos = 0.0, esum = 0.0, emx2 = 0.0, emy2 = 0.0, emxy = 0.0;
    double mx2 = 0.0, my2 = 0.0, mxy = 0.0;
    for (Py_ssize_t y = box.ymin; y < box.ymax; y++) {
        const float dy = (float)((double)y - my);
        for (Py_ssize_t x = box.xmin; x < box.xmax; x++) {
            const float dx = (float)((double)x - mx);
            const float r2 = dx * dx + dy * dy;
            if (!(r2 < sh->rextlim2)) continue;
            float locarea = r2 > sh->rintlim2
                ? sh->shares[points_inside(dx + sh->offset, dy + sh->offset, sh->scale, sh->raper2, WINPOS_OVERSAMP)]
                : 1.0f;
            locarea *= expf(-r2 * sh->invtwosig2);
            const Py_ssize_t at = y * width + x;
            Py_ssize_t source = at;
            if (masked(m, at, id)) source = mirror_of(m, x, y, mx2ph, my2ph, id);
            const double pix = source >= 0 ? (double)m->pixels[source] : 0.0;
            const double locpix = locarea * pix;
            tv += locpix;
            dxpos += locpix * dx;
            dypos += locpix * dy;
            if (!last) continue;
            if (errors) {
                const double var = pixel_variance(noise, source);
                double err = var;
                if (sh->invgain > 0.0 && pix > 0.0)
                    err += noise->per_pixel_gain ? pix * sh->invgain * var / noise->backnoise2 : pix * sh->invgain;
                const double err2 = locarea * locarea * err;
                esum += err2;
                emx2 += err2 * (dx * dx + 0.0833); /* the pixel's own size */
                emy2 += err2 * (dy * dy + 0.0833);
                emxy += err2 * dx * dy;
            }
            mx2 += locpix * dx * dx;
            my2 += locpix * dy * dy;
            mxy += locpix * dx * dy;
        }
    }
    *s = (Sums){tv, dxpos, dypos, esum, emx2, emy2, emxy, mx2, my2, mxy, s->cut};
}

static void winpos(const Mask *m, const NoiseTerms *noise, int32_t id, const Start *start, float hl_radius,
                   int errors, const float *shares, Window *w) {
    Shape sh;
    const float sig = (float)(hl_radius * 2.0 / 2.35); /* from half the FWHM */
    sh.invtwosig2 = (float)(1.0 / (2.0 * sig * sig));
    sh.raper = WINPOS_NSIG * sig;
    sh.raper2 = sh.raper * sh.raper;
    const float rintlim = (float)(sh.raper - 0.75);
    sh.rintlim2 = rintlim > 0.0 ? rintlim * rintlim : 0.0f;
    sh.rextlim2 = (float)((sh.raper + 0.75) * (sh.raper + 0.75));
    sh.scale = (float)(1.0 / WINPOS_OVERSAMP);
    sh.offset = (float)(0.5 * (sh.scale - 1.0));
    sh.invgain = noise->gain > 0.0 ? 1.0 / noise->gain : 0.0;
    sh.shares = shares;
    const double posx = start->x + 1.0, posy = start->y + 1.0; /* X_IMAGE, Y_IMAGE */
    double mx = posx - 1.0, my = posy - 1.0;
    Sums s = {0};
    w->cut = 0;
    for (int i = 0; i < WINPOS_NITERMAX; i++) {
        window_sums(m, noise, id, &sh, mx, my, 0, errors, &s);
        w->cut |= s.cut;
        /* the last step (no flux, too short a move, or the last allowed) sums its moments too: the
         * same centre, so the same centroid */
        const double stepx = s.dxpos / s.tv, stepy = s.dypos / s.tv;
        const int last = !(s.tv > 0.0) || stepx * stepx + stepy * stepy < WINPOS_STEPMIN * WINPOS_STEPMIN
            || i == WINPOS_NITERMAX - 1;
        if (last) window_sums(m, noise, id, &sh, mx, my, 1, errors, &s);
        if (!(s.tv > 0.0)) break;
        mx += (s.dxpos /= s.tv) * WINPOS_FAC;
        my += (s.dypos /= s.tv) * WINPOS_FAC;
        if (last) break;
    }
    const double mx2 = s.mx2 / s.tv - s.dxpos * s.dxpos;
    const double my2 = s.my2 / s.tv - s.dypos * s.dypos;
    const double mxy = s.mxy / s.tv - s.dxpos * s.dypos;
    const double temp2 = mx2 * my2 - mxy * mxy;
    w->x = mx + 1.0;
    w->y = my + 1.0;
    const double dx = w->x - posx, dy = w->y - posy;
    const double cx2 = start->cxx, cy2 = start->cyy, cxy = start->cxy;
    const int wandered = dx * dx > 1.0 && dy * dy > 1.0 && (cx2 * dx * dx + cy2 * dy * dy + cxy * dx * dy) > 1.0;
    w->flag = (uint8_t)(8 * wandered | 4 * (s.tv <= 0.0) | 2 * (mx2 < 0.0 || my2 < 0.0) | (temp2 < 0.0));
    if (w->flag) {
        w->x = posx;
        w->y = posy;
    }
    w->tv = s.tv;
    w->esum = s.esum;
    w->emx2 = s.emx2;
    w->emy2 = s.emy2;
    w->emxy = s.emxy;
}

static PyObject *windows(PyObject *self, PyObject *args) {
    PyObject *mask_t, *start_t, *noise_t, *out_t, *x0_o, *y0_o, *c_o[3], *hl_o, *use_o;
    int errors;
    if (!PyArg_ParseTuple(args, "O!O!O!pO!", &PyTuple_Type, &mask_t, &PyTuple_Type, &start_t, &PyTuple_Type, &noise_t,
                          &errors, &PyTuple_Type, &out_t))
        return NULL;
    Views v = {.held = 0};
    Mask m;
    NoiseTerms noise;
    const double *x0, *y0;
    const float *hl, *c[3];
    const uint8_t *use;
    double *out[7];
    uint8_t *cut, *flag;
    PyObject *o[9];
    if (take_mask(&v, mask_t, &m) < 0
        || !PyArg_ParseTuple(start_t, "OOOOOOO", &x0_o, &y0_o, &c_o[0], &c_o[1], &c_o[2], &hl_o, &use_o)
        || take(&v, x0_o, "x", F64, 8, -1, 0, 0, (void **)&x0) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t n = v.views[v.held - 1].len / 8;
    static const char *names[] = {"x", "y", "tv", "esum", "emx2", "emy2", "emxy"};
    if (take(&v, y0_o, "y", F64, 8, n, 0, 0, (void **)&y0) < 0
        || take(&v, c_o[0], "cxx", F32, 4, n, 0, 0, (void **)&c[0]) < 0
        || take(&v, c_o[1], "cyy", F32, 4, n, 0, 0, (void **)&c[1]) < 0
        || take(&v, c_o[2], "cxy", F32, 4, n, 0, 0, (void **)&c[2]) < 0
        || take(&v, hl_o, "hl_radius", F32, 4, n, 0, 0, (void **)&hl) < 0
        || take(&v, use_o, "use", BOOL, 1, n, 0, 0, (void **)&use) < 0
        || take_noise(&v, noise_t, &m, &noise) < 0
        || !PyArg_ParseTuple(out_t, "OOOOOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8])) {
        release(&v);
        return NULL;
    }
    for (int k = 0; k < 7; k++)
        if (take(&v, o[k], names[k], F64, 8, n, 1, 0, (void **)&out[k]) < 0) {
            release(&v);
            return NULL;
        }
    if (take(&v, o[7], "cut", BOOL, 1, n, 1, 0, (void **)&cut) < 0
        || take(&v, o[8], "flag", "B", 1, n, 1, 0, (void **)&flag) < 0) {
        release(&v);
        return NULL;
    }
    float shares[WINPOS_OVERSAMP * WINPOS_OVERSAMP + 1];
    point_shares(WINPOS_OVERSAMP, shares);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        const Start start = {x0[i], y0[i], c[0][i], c[1][i], c[2][i]};
        Window w = {x0[i] + 1.0, y0[i] + 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 4};
        if (use[i]) winpos(&m, &noise, (int32_t)(i + 1), &start, hl[i], errors, shares, &w);
        out[0][i] = w.x;
        out[1][i] = w.y;
        out[2][i] = w.tv;
        out[3][i] = w.esum;
        out[4][i] = w.emx2;
        out[5][i] = w.emy2;
        out[6][i] = w.emxy;
        cut[i] = w.cut;
        flag[i] = w.flag;
    }
    Py_END_ALLOW_THREADS
    release(&v);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"windows", windows, METH_VARARGS,
     "windows(mask, (x, y, cxx, cyy, cxy, hl_radius, use), noise, errors,\n"
     "        (xwin, ywin, tv, esum, emx2, emy2, emxy, cut, flag))\n\n"
     "compute_winpos for each source where use is true, from its 0-based barycentre x, y (float64)\n"
     "and isophotal ellipse (float32) with a window sized by hl_radius (float32, FLUX_RADIUS at 0.5).\n"
     "mask is NeighbourMask.for_sums(), noise Noise.for_sums().  Fills, per\n"
     "source: XWIN_IMAGE and YWIN_IMAGE (1-based), the last step's flux and, with errors, its error sums\n"
     "(un-normalised), whether the image cut a window, and win_flag (8: wandered off, 4: no flux,\n"
     "2: negative second moments, 1: not an ellipse; the position is then the barycentre).  Sources\n"
     "not used keep their barycentre and win_flag 4."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_winpos",
    "source-extractor's windowed positions and their error sums (see the C source).", -1, methods,
};

PyMODINIT_FUNC PyInit__winpos(void) { return PyModule_Create(&module); }
