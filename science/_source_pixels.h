/* What the C loops over a source's pixels share, from source-extractor's photom.c, growth.c and
 * winpos.c: its neighbour masking, the box it scans around a circle, the share of a pixel a circle
 * covers, and what each pixel adds to a variance.
 *
 * The mask is canfar_catalogue.science.photometry.NeighbourMask's, handed over
 * by its for_sums(): a pixel is masked for source i (segmentation id i + 1)
 * when it is blank, or its weight is bad, or it is in the masking map (above
 * the detection threshold) and the segmentation map gives it to another
 * source.  Under MASK_TYPE CORRECT a masked pixel takes the value of its
 * mirror through the source's centre, (int)(m2 - x) with m2 = 2 m + 0.49999
 * worked out by the caller in the precision its source-extractor routine uses,
 * when that mirror lies in the image and is not masked itself.
 */

#ifndef CANFAR_CATALOGUE_SOURCE_PIXELS_H
#define CANFAR_CATALOGUE_SOURCE_PIXELS_H

#include <stdint.h>

#include "_buffers.h"

typedef struct {
    const float *pixels;
    const int32_t *seg;
    const uint8_t *masking, *blank, *bad; /* each may be NULL */
    Py_ssize_t width, height;
    int correct;
} Mask;

/* Reads NeighbourMask.for_sums(): (pixels, segmap, masking, blank, bad, width, correct). */
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

static inline int masked(const Mask *m, Py_ssize_t at, int32_t id) {
    return (m->blank && m->blank[at]) || (m->bad && m->bad[at])
        || (m->masking && m->masking[at] && m->seg[at] != id);
}

/* The flat index whose value masked pixel (x, y) takes for source `id`: its mirror through the
 * centre whose doubled coordinates are m2x, m2y, or -1 (the pixel counts as 0) without CORRECT,
 * off the image, or when the mirror is masked too. */
static inline Py_ssize_t mirror_of(const Mask *m, Py_ssize_t x, Py_ssize_t y, double m2x, double m2y, int32_t id) {
    if (!m->correct) return -1;
    const int64_t x2 = (int64_t)(m2x - (double)x), y2 = (int64_t)(m2y - (double)y);
    if (x2 < 0 || x2 >= m->width || y2 < 0 || y2 >= m->height) return -1;
    const Py_ssize_t mirror = (Py_ssize_t)y2 * m->width + x2;
    return masked(m, mirror, id) ? -1 : mirror;
}

/* A box of pixels [xmin, xmax) x [ymin, ymax). */
typedef struct {
    Py_ssize_t xmin, xmax, ymin, ymax;
} Box;

/* The box photom.c, growth.c and winpos.c scan around a circle: (int)(c - r + 0.499999) to
 * (int)(c + r + 1.499999) on each axis, from c - r and c + r as the caller works them out in its
 * routine's precision, clipped to the image.  Returns whether the image cut it (FLAGS 16). */
static inline int circle_box(const Mask *m, double left, double right, double bottom, double top, Box *b) {
    b->xmin = (Py_ssize_t)(int)(left + 0.499999);
    b->xmax = (Py_ssize_t)(int)(right + 1.499999);
    b->ymin = (Py_ssize_t)(int)(bottom + 0.499999);
    b->ymax = (Py_ssize_t)(int)(top + 1.499999);
    int cut = 0;
    if (b->xmin < 0) { b->xmin = 0; cut = 1; }
    if (b->xmax > m->width) { b->xmax = m->width; cut = 1; }
    if (b->ymin < 0) { b->ymin = 0; cut = 1; }
    if (b->ymax > m->height) { b->ymax = m->height; cut = 1; }
    return cut;
}

#define OVERSAMP_MAX 11

/* How many of a pixel's oversamp x oversamp points fall inside r2, from the pixel's offset dx, dy
 * (already shifted to the first point), each point's offset the float sum of the previous one and
 * `scale`, as source-extractor steps them. */
static inline int points_inside(float dx, float dy, float scale, float r2, int oversamp) {
    float dx2[OVERSAMP_MAX];
    float dx1 = dx;
    for (int k = 0; k < oversamp; k++, dx1 += scale) dx2[k] = dx1 * dx1;
    int hits = 0;
    for (int sy = 0; sy < oversamp; sy++, dy += scale) {
        const float dy2 = dy * dy;
        for (int k = 0; k < oversamp; k++) hits += (dx2[k] + dy2 < r2);
    }
    return hits;
}

/* The share of a pixel after k of its oversamp² points fell inside, for k = 0 .. oversamp²:
 * scale² added in float one point after the other, as source-extractor adds it (25 of 0.04 is not 1). */
static inline void point_shares(int oversamp, float *shares) {
    const float scale = (float)(1.0 / oversamp), scale2 = scale * scale;
    shares[0] = 0.0f;
    for (int k = 1; k <= oversamp * oversamp; k++) shares[k] = shares[k - 1] + scale2;
}

/* What each pixel adds to a variance: the variance map's value where it has one (NULL: the
 * background's, backnoise2, everywhere), and with per_pixel_gain (WEIGHT_GAIN and a map) its own
 * Poisson term, value / gain scaled by variance / backnoise2. */
typedef struct {
    const float *variance;
    double gain, backnoise2;
    int per_pixel_gain;
} NoiseTerms;

/* Reads weights.Noise.for_sums(): (variance, gain, backnoise2, per_pixel_gain). */
static int take_noise(Views *v, PyObject *tuple, const Mask *m, NoiseTerms *n) {
    PyObject *variance;
    if (!PyArg_ParseTuple(tuple, "Oddp", &variance, &n->gain, &n->backnoise2, &n->per_pixel_gain)) return -1;
    return take(v, variance, "variance", F32, 4, m->width * m->height, 0, 1, (void **)&n->variance);
}

/* The variance of a measured pixel whose value came from flat index `source` (-1: counted as 0). */
static inline double pixel_variance(const NoiseTerms *n, Py_ssize_t source) {
    if (!n->variance) return n->backnoise2;
    return source >= 0 ? (double)n->variance[source] : 0.0;
}

#endif
