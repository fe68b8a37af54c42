"""External headers (HEADER_SUFFIX): cards that override each CCD's own, as source-extractor applies them.

source-extractor looks beside the image for a file named like it, its last
extension replaced by HEADER_SUFFIX (``1056213p.fits.fz`` -> ``1056213p.fits.head``):
ASCII cards, one block per image extension in order, each ended by ``END``.
That is how SCAMP hands back a refined astrometric solution.  Each block's
cards replace (or join) those of its CCD's header before anything is
measured, so the WCS and every column derived from it (``ALPHA_J2000`` ...)
follow the new solution.  Cards that describe the file's structure (BITPIX,
NAXIS, BZERO, the tile compression's) are not taken: the pixels are read as
the file says.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from astropy.io import fits

from .errors import ConfigError

_KEYWORD = re.compile(r"[A-Z0-9_-]{0,8} *")
#: Cards that describe how the pixels are stored: never taken from an external header.
STRUCTURE = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BZERO|BSCALE|BLANK|Z[A-Z0-9_]*|"
                       r"TFIELDS|T[A-Z]+\d+|CHECKSUM|DATASUM|END)$")


def beside(image: Path, suffix: str) -> Path:
    """The external header source-extractor reads beside ``image``: its last extension replaced by
    ``suffix`` (``x.fits`` -> ``x.head``, ``x.fits.fz`` -> ``x.fits.head``)."""
    stem = image.name.rsplit(".", 1)[0] if "." in image.name else image.name
    return image.with_name(stem + suffix)


def read_blocks(path: str | Path) -> list[list[fits.Card]]:
    """The cards of each block of ``path``, in order (a block per image extension)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read the external header {path}: {exc.strerror}") from None
    blocks, cards = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if line[:8].strip() == "END":
            blocks.append(cards)
            cards = []
            continue
        image = line.ljust(80)[:80]
        commentary = image[:8].strip() in ("COMMENT", "HISTORY", "")
        if not _KEYWORD.fullmatch(image[:8]) or not (commentary or image[8:10] == "= "):
            raise ConfigError(f"{path}, line {number}: not a FITS header card: {line.strip()[:60]!r}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                card = fits.Card.fromstring(image)
                card.verify("exception")
                card.value  # parsed now: a malformed value fails here, not in a CCD's worker
        except Exception as exc:  # astropy raises several kinds for a malformed card
            raise ConfigError(f"{path}, line {number}: not a FITS header card ({exc})") from None
        cards.append(card)
    if cards:
        blocks.append(cards)  # a last block without END, as source-extractor also takes it
    return blocks


def merged(header_text: str, cards: list[fits.Card]) -> str:
    """``header_text`` with ``cards`` applied: each replaces the card of the same keyword, or joins the
    header; COMMENT and HISTORY lines join."""
    header = fits.Header.fromstring(header_text)
    for card in cards:
        if STRUCTURE.match(card.keyword):
            continue
        if card.keyword in ("COMMENT", "HISTORY", ""):
            header.append(card)
        else:
            header[card.keyword] = (card.value, card.comment)
    return header.tostring()
