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
 * Unlike cfitsio, every read is checked against the end of the tile, so a
 * corrupt tile is an error, never a read past the buffer; bytes left over after
 * a tile's last pixel are an error too, as astropy makes them.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_buffers.h"

/* Significant bits of each byte value: 0 for 0, 1 for 1, 2 for 2-3, ..., 8 for 128-255. */
static uint8_t significant_bits[256];

static void fill_significant_bits(void) {
    for (int value = 1, bits = 0; value < 256; value++) {
        if (value >> bits) bits++;
        significant_bits[value] = (uint8_t)bits;
    }
}

typedef struct {
    const uint8_t *at, *end;
    int overrun;
} Reader;

static inline uint32_t next_byte(Reader *r) {
    if (r->at < r->end) return *r->at++;
    r->overrun = 1;
    return 0;
}

static inline uint32_t unmap(uint32_t mapped) { return (mapped & 1) ? ~(mapped >> 1) : mapped >> 1; }

/* One tile of n pixels, of `bytepix` bytes each, into out (as unsigned integers of that width).
 * Returns 0, or -1 when the tile's bytes end before its pixels do. */
static inline __attribute__((always_inline)) int decode_tile(Reader *r, void *out, Py_ssize_t n, int blocksize,
                                                             const int bytepix) {
    const int fsbits = bytepix == 1 ? 3 : bytepix == 2 ? 4 : 5;
    const int fsmax = bytepix == 1 ? 6 : bytepix == 2 ? 14 : 25;
    const int bbits = 8 * bytepix;
    const uint32_t width_mask = bytepix == 4 ? 0xFFFFFFFFu : (1u << bbits) - 1;
    uint8_t *out8 = out;
    uint16_t *out16 = out;
    uint32_t *out32 = out;
#define STORE(i, value)                          \
    do {                                         \
        if (bytepix == 1) out8[i] = (uint8_t)(value);   \
        else if (bytepix == 2) out16[i] = (uint16_t)(value); \
        else out32[i] = (uint32_t)(value);       \
    } while (0)

    uint32_t last = 0;
    for (int k = 0; k < bytepix; k++) last = (last << 8) | next_byte(r);
    uint32_t b = next_byte(r); /* bits not yet used, the low `nbits` of b */
    int nbits = 8;
    for (Py_ssize_t i = 0; i < n;) {
        nbits -= fsbits;
        while (nbits < 0) {
            b = (b << 8) | next_byte(r);
            nbits += 8;
        }
        const int fs = (int)(b >> nbits) - 1;
        b &= (1u << nbits) - 1;
        const Py_ssize_t block_end = i + blocksize < n ? i + blocksize : n;
        if (fs < 0) {
            for (; i < block_end; i++) STORE(i, last);
        } else if (fs == fsmax) {
            for (; i < block_end; i++) {
                int k = bbits - nbits;
                uint32_t mapped = k < 32 ? b << k : 0;
                for (k -= 8; k >= 0; k -= 8) mapped |= next_byte(r) << k;
                if (nbits > 0) {
                    b = next_byte(r);
                    mapped |= b >> (-k);
                    b &= (1u << nbits) - 1;
                } else {
                    b = 0;
                }
                last = (unmap(mapped) + last) & width_mask;
                STORE(i, last);
            }
        } else {
            for (; i < block_end; i++) {
                while (b == 0) {
                    if (r->overrun) return -1; /* zeros past the end would never stop */
                    nbits += 8;
                    b = next_byte(r);
                }
                const int zeros = nbits - significant_bits[b];
                nbits -= zeros + 1;
                b ^= 1u << nbits;
                nbits -= fs;
                while (nbits < 0) {
                    b = (b << 8) | next_byte(r);
                    nbits += 8;
                }
                const uint32_t mapped = ((uint32_t)zeros << fs) | (b >> nbits);
                b &= (1u << nbits) - 1;
                last = (unmap(mapped) + last) & width_mask;
                STORE(i, last);
            }
        }
        if (r->overrun) return -1;
    }
#undef STORE
    return 0;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *heap_o, *spans_o, *out_o;
    Py_ssize_t tile_pixels;
    int bytepix, blocksize;
    if (!PyArg_ParseTuple(args, "OOniiO", &heap_o, &spans_o, &tile_pixels, &bytepix, &blocksize, &out_o)) return NULL;
    Views v = {.held = 0};
    const uint8_t *heap;
    const int64_t *spans;
    void *out;
    if (bytepix != 1 && bytepix != 2 && bytepix != 4) {
        PyErr_Format(PyExc_ValueError, "BYTEPIX %d: RICE_1 stores 1, 2 or 4 bytes a pixel", bytepix);
        return NULL;
    }
    if (blocksize < 1 || tile_pixels < 1) {
        PyErr_Format(PyExc_ValueError, "BLOCKSIZE %d, %zd pixels a tile: both must be positive", blocksize, tile_pixels);
        return NULL;
    }
    if (take(&v, heap_o, "heap", BOOL, 1, -1, 0, 0, (void **)&heap) < 0
        || take(&v, spans_o, "spans", I64, 8, -1, 0, 0, (void **)&spans) < 0
        || take(&v, out_o, "out", bytepix == 1 ? "bB" : bytepix == 2 ? "hH" : "iIlL", bytepix, -1, 1, 0, &out) < 0) {
        release(&v);
        return NULL;
    }
    const Py_ssize_t heap_size = v.views[0].len, ntiles = v.views[1].len / 16, pixels = v.views[2].len / bytepix;
    const Py_ssize_t expected = (pixels + tile_pixels - 1) / tile_pixels;
    if (v.views[1].len % 16 || ntiles != expected) {
        release(&v);
        return PyErr_Format(PyExc_ValueError, "%zd tiles in the table, %zd expected for %zd pixels", ntiles, expected,
                            pixels);
    }
    Py_ssize_t failed = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < ntiles && failed < 0; t++) {
        const int64_t count = spans[2 * t], offset = spans[2 * t + 1];
        if (count < 0 || offset < 0 || offset > heap_size || count > heap_size - offset) {
            failed = t;
            break;
        }
        Reader r = {heap + offset, heap + offset + count, 0};
        const Py_ssize_t first = t * tile_pixels, n = first + tile_pixels < pixels ? tile_pixels : pixels - first;
        uint8_t *tile_out = (uint8_t *)out + first * bytepix;
        int status = bytepix == 1 ? decode_tile(&r, tile_out, n, blocksize, 1)
                   : bytepix == 2 ? decode_tile(&r, tile_out, n, blocksize, 2)
                                  : decode_tile(&r, tile_out, n, blocksize, 4);
        if (status < 0 || r.at != r.end) failed = t; /* cut short, or bytes left over: astropy refuses both */
    }
    Py_END_ALLOW_THREADS
    release(&v);
    if (failed >= 0) return PyErr_Format(PyExc_ValueError, "tile %zd: corrupt (its bytes do not decode to exactly its pixels)",
                                           failed + 1);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(heap, spans, tile_pixels, bytepix, blocksize, out)\n\n"
     "Decode every RICE_1 tile of a compressed image: spans is an int64 array of (byte count,\n"
     "heap offset) per tile, each tile holds tile_pixels pixels (the last what is left), and out\n"
     "(integers of bytepix bytes, as many as the image has pixels) receives them as stored."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rice", "RICE_1 decoding of every tile of a CCD in one call (see the C source).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__rice(void) {
    fill_significant_bits();
    return PyModule_Create(&module);
}
