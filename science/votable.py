"""CATALOG_TYPE ASCII_VOTABLE: what source-extractor writes, with what it gets wrong mended.

The layout is Debian's source-extractor 2.25's: one ``RESOURCE`` holding the
``TABLE`` ``Source_List``, a ``FIELD`` per column (its name, UCD, datatype,
unit and description) and every CCD's rows in ``TABLEDATA``; then the
``RESOURCE`` ``MetaData``: the software, a row per CCD (``Extension_Data``:
sources, background, RMS, threshold, seconds), the warnings (each skipped
CCD) and the configuration (``Config``).

Mended: source-extractor's vector ``FIELD``\\ s declare no ``arraysize``, so
``FLUX_APER(2)`` is read as one value, or as nothing; its resource's ``ID``
holds a space, which no XML ID may; and it names no namespace.  Ours is
VOTable 1.3 in its namespace, with ``arraysize`` ``n`` for a vector and
``wxh`` for a stamp, valid IDs, valid UCDs and no ``COOSYS`` (deprecated since 1.2), so that
``astropy.io.votable.parse(path, verify="warn")`` reads it without a
warning.  The UCDs, datatypes and units are source-extractor's, read off its
output for every column, but for VIGNET's ``obs.image``, a word that cannot
stand first (``phot.count;obs.image`` here), and ELLIPTICITY's, which ends in
a tab there; its metadata's ``time.event.end`` is no UCD word either
(``time.end`` here), nor is ``obs.image`` first in Image_Name's.
"""

from __future__ import annotations

import time
from typing import Sequence, TextIO
from xml.sax.saxutils import quoteattr

import numpy as np

from .columns import COLUMNS, parameter
from .ldac import software
from .results import Extraction

NAMESPACE = "http://www.ivoa.net/xml/VOTable/v1.3"

#: Each column's UCD, as source-extractor 2.25 writes it.
UCDS = {
    "NUMBER": "meta.record", "EXT_NUMBER": "meta.id;meta.dataset",
    "X_IMAGE": "pos.cartesian.x;pos.barycenter;instr.det;meta.main",
    "Y_IMAGE": "pos.cartesian.y;pos.barycenter;instr.det;meta.main",
    "MAG_AUTO": "phot.mag;meta.main", "MAGERR_AUTO": "stat.stdev;phot.mag;meta.main",
    "FLUX_AUTO": "phot.flux;meta.main", "FLUXERR_AUTO": "stat.stdev;phot.flux;meta.main",
    "KRON_RADIUS": "arith.factor;arith.ratio", "A_IMAGE": "phys.size.smajAxis;instr.det;meta.main",
    "B_IMAGE": "phys.size.sminAxis;instr.det;meta.main", "THETA_IMAGE": "pos.posAng;instr.det;meta.main",
    "FLAGS": "meta.code.qual", "ALPHA_J2000": "pos.eq.ra;pos.barycenter;meta.main",
    "DELTA_J2000": "pos.eq.dec;pos.barycenter;meta.main", "X_WORLD": "pos.eq.ra", "Y_WORLD": "pos.eq.dec",
    "ELONGATION": "src.ellipticity;arith.ratio;instr.det", "ELLIPTICITY": "src.ellipticity;instr.det",
    "BACKGROUND": "instr.skyLevel", "ISOAREA_IMAGE": "phys.area", "FLUX_MAX": "phot.flux.sb;stat.max",
    "FLUX_ISO": "phot.flux", "FLUXERR_ISO": "stat.stdev;phot.flux", "MAG_ISO": "phot.mag",
    "MAGERR_ISO": "stat.stdev;phot.mag", "FLUX_RADIUS": "phys.size.radius;instr.det", "FLUX_APER": "phot.flux",
    "FLUXERR_APER": "stat.stdev;phot.flux", "MAG_APER": "phot.mag", "MAGERR_APER": "stat.stdev;phot.mag",
    "CLASS_STAR": "src.class.starGalaxy", "VIGNET": "phot.count;obs.image", "XWIN_IMAGE": "pos.cartesian.x;instr.det",
    "YWIN_IMAGE": "pos.cartesian.y;instr.det", "ERRAWIN_IMAGE": "stat.stdev;stat.max;pos.errorEllipse;instr.det",
    "ERRBWIN_IMAGE": "stat.stdev;stat.min;pos.errorEllipse;instr.det",
    "ERRTHETAWIN_IMAGE": "pos.posAng;pos.errorEllipse;instr.det", "SNR_WIN": "stat.snr",
    "IMAFLAGS_ISO": "meta.code.qual", "NIMAFLAGS_ISO": "meta.number", "MU_THRESHOLD": "instr.sensitivity;phot.mag.sb",
    "FWHM_IMAGE": "phys.size.diameter;instr.det.psf", "FWHM_WORLD": "phys.angSize;instr.det.psf",
    "MU_MAX": "phot.mag.sb;stat.max",
}
#: Our FITS units (:mod:`.columns`) as source-extractor writes them in a VOTable.
UNITS = {"pixel": "pix", "count": "ct", "pixel**2": "pix2", "mag * arcsec**(-2)": "mag.arcsec-2"}
#: A binary TFORM letter's VOTable datatype.
DATATYPES = {"I": "short", "J": "int", "E": "float", "D": "double"}


def _field(spelling: str) -> str:
    column = parameter(spelling)
    spec = COLUMNS[column.name]
    unit = UNITS.get(spec.unit, spec.unit)
    attributes = [f'name="{column.name}"', f'ucd="{UCDS[column.name]}"', f'datatype="{DATATYPES[spec.ldac[-1]]}"']
    if unit:
        attributes.append(f'unit="{unit}"')
    if column.shape:
        attributes.append(f'arraysize="{"x".join(map(str, column.shape))}"')
    return (f'  <FIELD {" ".join(attributes)}>\n   <DESCRIPTION>{_text(spec.description)}</DESCRIPTION>\n'
            "  </FIELD>\n")


def _text(value: object) -> str:
    return quoteattr(str(value))[1:-1]


def _rows(out: TextIO, sources: np.ndarray) -> None:
    """One ``TR`` a source; a vector's elements, and a stamp's pixels row by row, in one ``TD``."""
    if len(sources) == 0:
        return
    cells = []
    for name in sources.dtype.names:
        fmt = COLUMNS[name].fmt
        values = sources[name].reshape(len(sources), -1)
        cells.append([" ".join(fmt % v for v in row).strip() for row in values.tolist()])
    for row in zip(*cells):
        out.write("    <TR>" + "".join(f"<TD>{cell}</TD>" for cell in row) + "</TR>\n")


def _param(name: str, value: object, ucd: str, datatype: str = "char", unit: str = "") -> str:
    size = ' arraysize="*"' if datatype == "char" else ""
    unit = f' unit="{unit}"' if unit else ""
    return f'  <PARAM name="{name}" datatype="{datatype}"{size} ucd="{ucd}" value={quoteattr(str(value))}{unit}/>\n'


def _metadata(about: Extraction) -> str:
    result, config = about.result, about.config
    parts = [
        ' <RESOURCE ID="MetaData" name="MetaData">\n  <DESCRIPTION>canfar-catalogue meta-data</DESCRIPTION>\n',
        _param("Software", software(), "meta.title;meta.software"),
        _param("Date", time.strftime("%Y-%m-%d", time.gmtime()), "time.end;meta.software"),
        _param("Time", time.strftime("%H:%M:%S", time.gmtime()), "time.end;meta.software"),
        _param("Duration", f"{result.seconds:.3f}", "time.duration;meta.software", "float", "s"),
        _param("Image_Name", about.image, "meta.id;meta.file"),
        '  <TABLE ID="Extension_Data" name="Extension_Data">\n'
        "   <DESCRIPTION>Data gathered for every CCD measured</DESCRIPTION>\n",
        _param("NExtensions", len(result.ccds), "meta.number;meta.dataset", "int"),
        '   <FIELD name="Extension" datatype="int" ucd="meta.record"/>\n'
        '   <FIELD name="Duration" datatype="float" ucd="time.duration" unit="s"/>\n'
        '   <FIELD name="NSextracted" datatype="int" ucd="meta.number;src.sample"/>\n'
        '   <FIELD name="Image_Ident" datatype="char" arraysize="*" ucd="meta.id;obs"/>\n'
        '   <FIELD name="Background_Mean" datatype="float" ucd="instr.skyLevel;obs.image;stat.median" unit="ct"/>\n'
        '   <FIELD name="Background_StDev" datatype="float" ucd="stat.stdev;obs.image;stat.median" unit="ct"/>\n'
        '   <FIELD name="Threshold" datatype="float" ucd="instr.sensitivity;obs.image;stat.median" unit="ct"/>\n'
        "   <DATA><TABLEDATA>\n",
    ]
    for ccd in result.measured():
        cells = (ccd.ext_number, f"{ccd.seconds:.3f}", ccd.count, _text(ccd.label), f"{ccd.background:.7g}",
                 f"{ccd.rms:.7g}", f"{ccd.threshold:.7g}")
        parts.append("    <TR>" + "".join(f"<TD>{cell}</TD>" for cell in cells) + "</TR>\n")
    parts.append("   </TABLEDATA></DATA>\n  </TABLE>\n")
    parts.append('  <TABLE ID="Warnings" name="Warnings">\n   <DESCRIPTION>What went wrong (each CCD skipped)</DESCRIPTION>\n'
                 '   <FIELD name="Msg" datatype="char" arraysize="*" ucd="meta"/>\n   <DATA><TABLEDATA>\n')
    for ccd in result.failed:
        parts.append(f"    <TR><TD>{_text(f'{ccd.label}: skipped: {ccd.error}')}</TD></TR>\n")
    parts.append("   </TABLEDATA></DATA>\n  </TABLE>\n")
    parts.append('  <RESOURCE ID="Config" name="Config">\n   <DESCRIPTION>The configuration</DESCRIPTION>\n')
    for key, value in config.measurement_dict().items():
        if key in ("filter_kernel", "star_nnw"):  # numbers read from a file: the fingerprint stands for them
            continue
        text = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
        parts.append(" " + _param("_".join(word.capitalize() for word in key.split("_")), text, "obs.param"))
    parts.append(" " + _param("Fingerprint", config.fingerprint(), "meta.id;obs.param"))
    parts.append("  </RESOURCE>\n </RESOURCE>\n")
    return "".join(parts)


def write_votable(out: TextIO, blocks: Sequence[np.ndarray], parameters: Sequence[str], about: Extraction) -> None:
    """The whole catalogue, as text to ``out``."""
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n'
              f'<VOTABLE version="1.3" xmlns="{NAMESPACE}" '
              'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
              "<DESCRIPTION>produced by canfar-catalogue</DESCRIPTION>\n"
              f'<RESOURCE ID="canfar-catalogue" name={quoteattr(about.image)}>\n'
              " <DESCRIPTION>Catalog of sources extracted by canfar-catalogue</DESCRIPTION>\n"
              ' <INFO name="QUERY_STATUS" value="OK"/>\n'
              f' <TABLE ID="Source_List" name={quoteattr(about.image + "/out")}>\n'
              "  <DESCRIPTION>Table of sources detected in image</DESCRIPTION>\n")
    for spelling in parameters:
        out.write(_field(spelling))
    out.write("  <DATA><TABLEDATA>\n")
    for block in blocks:
        _rows(out, block)
    out.write("  </TABLEDATA></DATA>\n </TABLE>\n")
    out.write(_metadata(about))
    out.write("</RESOURCE>\n</VOTABLE>\n")
