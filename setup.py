"""The science package's C loops; everything else about the build is in pyproject.toml.

science/_aperture_sums.c holds the pixel loops of MAG_AUTO and FLUX_APER, _growth.c and _winpos.c
those of FLUX_RADIUS and the windowed positions (the three share _source_pixels.h), _filter.c the
detection filter's, _rice.c and _dither.c the decoding of a compressed CCD.  They read numpy
arrays through the buffer protocol (science/_buffers.h), so they need no numpy headers, only a C
compiler and Python's own.  -ffp-contract=off keeps every float32
product rounded on its own, as numpy rounds it, so that their results are numpy's to the bit;
-O3 vectorises the filter's rows (element by element, so the same floats), which -O2 does not.
"""

from setuptools import Extension, setup

FLOAT32_AS_NUMPY = ["-O3", "-ffp-contract=off", "-fno-math-errno"]

setup(
    ext_modules=[
        Extension(f"canfar_catalogue.science.{name}", sources=[f"science/{name}.c"],
                  depends=["science/_buffers.h", "science/_source_pixels.h"], extra_compile_args=FLOAT32_AS_NUMPY)
        for name in ("_aperture_sums", "_filter", "_rice", "_dither", "_winpos", "_growth")
    ]
)
