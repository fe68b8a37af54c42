"""IMAFLAGS_ISO and NIMAFLAGS_ISO: an external flag map composited over each source's pixels.

A flag map is an integer image beside the exposure, CCD by CCD (``FLAG_IMAGE``), whose
non-zero pixels mark what the user wants to know about (bad columns, satellite trails, a
mask of their own).  source-extractor's ``getflags`` (flag.c) visits the pixels of each
detection (its segment) and keeps only the non-zero flags:

========  ===============================================  ===========================================
FLAG_TYPE IMAFLAGS_ISO                                     NIMAFLAGS_ISO
========  ===============================================  ===========================================
OR        the flags OR'ed together                         the number of flagged pixels
AND       0: source-extractor starts the AND from 0        the number of flagged pixels
MIN       the smallest flag                                the pixels holding it
MAX       the largest flag                                 the pixels holding it
MOST      the most frequent flag                           the pixels holding it
========  ===============================================  ===========================================

Flags are 32-bit unsigned, as source-extractor's FLAGTYPE.  With MOST, when two flags are
equally frequent source-extractor keeps the one met first along its pixel list; here the
smaller flag is kept.
"""

from __future__ import annotations

import numpy as np

FLAG_TYPES = ("OR", "AND", "MIN", "MAX", "MOST")


def isophotal_flags(segmap: np.ndarray, flag_map: np.ndarray, count: int, flag_type: str = "OR"):
    """(IMAFLAGS_ISO, NIMAFLAGS_ISO) of the ``count`` sources of ``segmap`` (labels 1..count)."""
    flagged = np.flatnonzero(flag_map.ravel() != 0)
    owners = segmap.ravel()[flagged]
    mine = owners > 0
    owners = owners[mine].astype(np.int64) - 1
    values = flag_map.ravel()[flagged[mine]].astype(np.int64) & 0xFFFFFFFF
    flags = np.zeros(count, dtype=np.int64)
    number = np.bincount(owners, minlength=count).astype(np.int64)
    if flag_type == "OR":
        np.bitwise_or.at(flags, owners, values)
    elif flag_type in ("MIN", "MAX"):
        extreme = np.full(count, 0xFFFFFFFF if flag_type == "MIN" else 0, dtype=np.int64)
        (np.minimum if flag_type == "MIN" else np.maximum).at(extreme, owners, values)
        holding = values == extreme[owners]
        number = np.bincount(owners[holding], minlength=count).astype(np.int64)
        flags = np.where(number > 0, extreme, 0)
    elif flag_type == "MOST":
        order = np.lexsort((values, owners))
        owners, values = owners[order], values[order]
        starts = np.flatnonzero(np.r_[True, (owners[1:] != owners[:-1]) | (values[1:] != values[:-1])])
        runs = np.diff(np.r_[starts, len(owners)])
        owner, value = owners[starts], values[starts]
        # each source's longest run first; among equal runs the smaller flag
        pick = np.lexsort((value, -runs, owner))
        first = pick[np.r_[True, owner[pick][1:] != owner[pick][:-1]]] if len(pick) else pick
        flags[owner[first]] = value[first]
        number = np.zeros(count, dtype=np.int64)
        number[owner[first]] = runs[first]
    elif flag_type != "AND":
        raise ValueError(f"unknown FLAG_TYPE {flag_type!r}: one of {', '.join(FLAG_TYPES)}")
    return flags, number
