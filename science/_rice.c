/* Rice decoding of a tile-compressed CCD, every tile in one call, into one array.
 *
 * The algorithm is the FITS tiled-image convention's RICE_1 (Pence, White et al.,
 * "Lossless Astronomical Image Compression and the Effects of Noise", and
 * cfitsio's fits_rdecomp family, which funpack and astropy use): per tile, the
 * first pixel as BYTEPIX big-endian bytes, then blocks of BLOCKSIZE pixel
 * differences, each block led by an FSBITS code:
 *   - 0: every difference in the block is zero;
 *   - FSMAX + 1: each difference stored whole, in BBITS bits;
 *   - fs + 1 otherwise: each difference as a unary count of leading zeros, a one
 *     bit, then fs low bits.
 * A difference d is stored mapped to an unsigned value (d >= 0: 2d, else -2d-1),
 * and pixels are summed in unsigned arithmetic of the pixel's width, wrapping as
 * cfitsio's does, so the values are cfitsio's to the bit.
 *
 * astropy's decoder (decompress_rice_1_c) takes one tile per Python call and
 * returns a new bytes object; fpack writes one tile per row, 4,612 to a MegaCam
 * CCD, so the calls, the slicing and the joining cost a third of the decoding.
 * Bits are read through a 64-bit window refilled eight bytes at a time, and a
 * run of zeros and the low bits after it are taken from the window together,
 * counted with one count-leading-zeros instruction rather than cfitsio's
 * byte-by-byte table.
 * Unlike cfitsio, no read goes past the end of the tile, so a corrupt tile is
 * an error, never a read past the buffer; bytes left over after a tile's last
 * pixel are an error too, as astropy makes them.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_buffers.h"

/* A tile's bit stream, most significant bit first, read through a 64-bit window.  Bytes past
 * the tile's end read as zeros and are counted: the stream must use exactly its bytes.
 * Away from the end a refill loads eight bytes in one go and keeps the whole bytes that fit; the
 * bits below those may already hold the next bytes' bits, which the next refill ORs in again, the
 * same bits, so they are never wrong, only not yet counted in `held`. */
typedef struct {
    const uint8_t *bytes;
    Py_ssize_t count, next; /* the stream's bytes, and the next one to load */
    uint64_t window;        /* bits not yet used, left-aligned */
    int held;               /* how many bits of window are counted as the stream's */
} Bits;

static inline void refill(Bits *r) { /* afterwards held >= 57 */
    if (r->next + 8 <= r->count) {
        uint64_t word;
        memcpy(&word, r->bytes + r->next, 8);
        r->window |= __builtin_bswap64(word) >> r->held;
        const int whole = (63 - r->held) >> 3;
        r->next += whole;
        r->held += 8 * whole;
        return;
    }
    while (r->held <= 56) {
        const uint64_t byte = r->next < r->count ? r->bytes[r->next] : 0;
        r->next++;
        r->window |= byte << (56 - r->held);
        r->held += 8;
    }
}

/* Bits used so far. */
static inline int64_t used(const Bits *r) { return 8 * (int64_t)r->next - r->held; }

static inline void skip(Bits *r, int k) { /* k <= held */
    r->window = k < 64 ? r->window << k : 0;
    r->held -= k;
}

static inline uint32_t take_bits(Bits *r, int k) { /* 0 <= k <= 32 */
    if (k == 0) return 0;
    if (r->held < k) refill(r);
    const uint32_t value = (uint32_t)(r->window >> (64 - k));
    skip(r, k);
    return value;
}

/* The number of zeros before the next one bit, that bit used too; -1 past the stream's end. */
static inline int64_t unary(Bits *r) {
    int64_t zeros = 0;
    for (;;) {
        if (r->window) {
            const int lead = __builtin_clzll(r->window);
            if (lead < r->held) {
                skip(r, lead + 1);
                return zeros + lead;
            }
        }
        zeros += r->held;
        skip(r, r->held);
        if (used(r) > 8 * (int64_t)r->count) return -1;
        refill(r);
    }
}

/* One difference coded in fs low bits after a unary count: both read from the window at once
 * when it holds them, as it nearly always does after a refill. */
static inline int64_t take_coded(Bits *r, int fs) {
    if (r->held < 32) refill(r);
    const uint64_t window = r->window;
    const int lead = window ? __builtin_clzll(window) : 64;
    if (lead + 1 + fs <= r->held) {
        const uint64_t low = fs ? (window << lead << 1) >> (64 - fs) : 0;
        skip(r, lead + 1 + fs);
        return ((int64_t)lead << fs) | (int64_t)low;
    }
    const int64_t zeros = unary(r);
    if (zeros < 0) return -1;
    return (zeros << fs) | take_bits(r, fs);
}

static inline uint32_t unmap(uint32_t mapped) { return (mapped & 1) ? ~(mapped >> 1) : mapped >> 1; }

/* One tile of n pixels, of `bytepix` bytes each, from `count` bytes into out (as unsigned integers
 * of that width).  Returns 0, or -1 when its bytes are too few or too many for its pixels. */
static inline __attribute__((always_inline)) int decode_tile(const uint8_t *bytes, Py_ssize_t count, void *out,
                                                             Py_ssize_t n, int blocksize, const int bytepix) {
    const int fsbits = bytepix == 1 ? 3 : bytepix == 2 ? 4 : 5;
    const int fsmax = bytepix == 1 ? 6 : bytepix == 2 ? 14 : 25;
    const int bbits = 8 * bytepix;
    const uint32_t width_mask = bytepix == 4 ? 0xFFFFFFFFu : (1u << bbits) - 1;
    uint8_t *out8 = out;
    uint16_t *out16 = out;
    uint32_t *out32 = out;
#define STORE(i, value)                                      \
    do {                                                     \
        if (bytepix == 1) out8[i] = (uint8_t)(value);        \
        else if (bytepix == 2) out16[i] = (uint16_t)(value); \
        else out32[i] = (uint32_t)(value);                   \
    } while (0)

    if (count <= bytepix) return -1;
    uint32_t last = 0;
    for (int k = 0; k < bytepix; k++) last = (last << 8) | bytes[k];
    Bits r = {bytes + bytepix, count - bytepix, 0, 0, 0};
    for (Py_ssize_t i = 0; i < n;) {
        const int fs = (int)take_bits(&r, fsbits) - 1;
        const Py_ssize_t block_end = i + blocksize < n ? i + blocksize : n;
        if (fs < 0) {
            for (; i < block_end; i++) STORE(i, last);
        } else if (fs == fsmax) {
            for (; i < block_end; i++) {
                last = (unmap(take_bits(&r, bbits)) + last) & width_mask;
                STORE(i, last);
            }
        } else {
            for (; i < block_end; i++) {
                const int64_t mapped = take_coded(&r, fs);
                if (mapped < 0) return -1;
                last = (unmap((uint32_t)mapped) + last) & width_mask;
                STORE(i, last);
            }
        }
        if (used(&r) > 8 * (int64_t)r.count) return -1;
    }
#undef STORE
    return (used(&r) + 7) / 8 == r.count ? 0 : -1; /* bytes left over: astropy refuses them too */
}

/* How stored integers become float32 pixel values (science/scaling.py): stored + zero, then × scale
 * when the header's BSCALE is not 1, each in float32, and NaN where the stored value is blank. */
typedef struct {
    float zero, scale;
    int rescale, has_blank;
    int64_t blank;
} Scaling;

#define TO_PIXELS(type)                                                      \
    for (Py_ssize_t i = 0; i < n; i++) {                                    \
        const type value = (type)stored[i];                                 \
        float pixel = (float)value + s->zero;                               \
        if (s->rescale) pixel *= s->scale;                                  \
        out[i] = s->has_blank && (int64_t)value == s->blank ? NAN : pixel; \
    }

static inline void to_pixels16(const uint16_t *restrict stored, Py_ssize_t n, const Scaling *s, float *restrict out) {
    TO_PIXELS(int16_t)
}

static inline void to_pixels32(const uint32_t *restrict stored, Py_ssize_t n, const Scaling *s, float *restrict out) {
    TO_PIXELS(int32_t)
}
#undef TO_PIXELS

/* Every tile into out; the index of the first corrupt tile, or -1.  With a scaling, out is float32
 * and each tile is decoded into `tile` (one tile's stored integers, in the cache) and converted from
 * there, so the CCD's stored integers are never written out whole.
 *
 * The decoding is one dependent chain per pixel (count the zeros, shift them out, count again),
 * and x86's variable shifts and bsr are slow links in it: with BMI2's shifts and LZCNT it runs
 * about 1.7 times as fast.  So on x86-64 it is compiled twice, and the loader picks the copy the
 * processor can run (GCC's target_clones); the two give the same pixels. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
static Py_ssize_t decode_tiles(const uint8_t *heap, Py_ssize_t heap_size, const int64_t *spans, Py_ssize_t ntiles,
                               Py_ssize_t tile_pixels, Py_ssize_t pixels, int bytepix, int blocksize, void *out,
                               const Scaling *scaling, void *tile) {
    for (Py_ssize_t t = 0; t < ntiles; t++) {
        const int64_t count = spans[2 * t], offset = spans[2 * t + 1];
        if (count < 0 || offset < 0 || offset > heap_size || count > heap_size - offset) return t;
        const Py_ssize_t first = t * tile_pixels, n = first + tile_pixels < pixels ? tile_pixels : pixels - first;
        uint8_t *tile_out = scaling ? tile : (uint8_t *)out + first * bytepix;
        const uint8_t *bytes = heap + offset;
        const int status = bytepix == 1 ? decode_tile(bytes, count, tile_out, n, blocksize, 1)
                         : bytepix == 2 ? decode_tile(bytes, count, tile_out, n, blocksize, 2)
                                        : decode_tile(bytes, count, tile_out, n, blocksize, 4);
        if (status < 0) return t;
        if (scaling && bytepix == 2) to_pixels16(tile, n, scaling, (float *)out + first);
        else if (scaling) to_pixels32(tile, n, scaling, (float *)out + first);
    }
    return -1;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *heap_o, *spans_o, *out_o, *blank_o = Py_None;
    Py_ssize_t tile_pixels;
    int bytepix, blocksize;
    double zero = 0.0, scale = 1.0;
    if (!PyArg_ParseTuple(args, "OOniiO|(ddO)", &heap_o, &spans_o, &tile_pixels, &bytepix, &blocksize, &out_o, &zero,
                          &scale, &blank_o))
        return NULL;
    const int scaled = PyTuple_GET_SIZE(args) > 6;
    Scaling scaling = {(float)zero, (float)scale, scale != 1.0, blank_o != Py_None, 0};
    if (scaling.has_blank) {
        scaling.blank = PyLong_AsLongLong(blank_o);
        if (scaling.blank == -1 && PyErr_Occurred()) return NULL;
    }
    Views v = {.held = 0};
    const uint8_t *heap;
    const int64_t *spans;
    void *out;
    if (bytepix != 1 && bytepix != 2 && bytepix != 4) {
        PyErr_Format(PyExc_ValueError, "BYTEPIX %d: RICE_1 stores 1, 2 or 4 bytes a pixel", bytepix);
        return NULL;
    }
    if (scaled && bytepix == 1) {
        PyErr_SetString(PyExc_ValueError, "scaling: only 16- and 32-bit integers are converted to pixel values here");
        return NULL;
    }
    if (blocksize < 1 || tile_pixels < 1) {
        PyErr_Format(PyExc_ValueError, "BLOCKSIZE %d, %zd pixels a tile: both must be positive", blocksize, tile_pixels);
        return NULL;
    }
    if (take(&v, heap_o, "heap", BOOL, 1, -1, 0, 0, (void **)&heap) < 0
        || take(&v, spans_o, "spans", I64, 8, -1, 0, 0, (void **)&spans) < 0
        || take(&v, out_o, "out", scaled ? F32 : integer_formats(bytepix), scaled ? 4 : bytepix, -1, 1, 0, &out) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t heap_size = v.views[0].len, ntiles = v.views[1].len / 16, pixels = v.views[2].len / (scaled ? 4 : bytepix);
    const Py_ssize_t expected = (pixels + tile_pixels - 1) / tile_pixels;
    if (v.views[1].len % 16 || ntiles != expected) {
        release(&v);
        return PyErr_Format(PyExc_ValueError, "%zd tiles in the table, %zd expected for %zd pixels", ntiles, expected,
                            pixels);
    }
    void *tile = NULL;
    if (scaled && !(tile = PyMem_RawMalloc(tile_pixels * bytepix))) {
        release(&v);
        return PyErr_NoMemory();
    }
    Py_ssize_t failed;
    Py_BEGIN_ALLOW_THREADS
    failed = decode_tiles(heap, heap_size, spans, ntiles, tile_pixels, pixels, bytepix, blocksize, out,
                          scaled ? &scaling : NULL, tile);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(tile);
    release(&v);
    if (failed >= 0) return PyErr_Format(PyExc_ValueError, "tile %zd: corrupt (its bytes do not decode to exactly its pixels)",
                                           failed + 1);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(heap, spans, tile_pixels, bytepix, blocksize, out[, (zero, scale, blank)])\n\n"
     "Decode every RICE_1 tile of a compressed image: spans is an int64 array of (byte count,\n"
     "heap offset) per tile, each tile holds tile_pixels pixels (the last what is left), and out\n"
     "(integers of bytepix bytes, as many as the image has pixels) receives them as stored.\n"
     "With a scaling (BZERO, BSCALE, and BLANK or None), out is float32 and receives pixel values,\n"
     "as science/scaling.py's to_float32 makes them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rice", "RICE_1 decoding of every tile of a CCD in one call (see the C source).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rice(void) { return PyModule_Create(&module); }
