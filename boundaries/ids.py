"""CFHT observation IDs, checked before any work is done.

An ID such as ``1056213p`` is an exposure number and a one-letter type
(``p`` for a processed MegaCam file).  Anything else — a path, a space, a
shell metacharacter, a look-alike Unicode digit — is rejected, so an ID can be
used as a file name and in a URI as it is.
"""

from __future__ import annotations

import re

_ID = re.compile(r"[0-9]{6,8}[a-z]")
SUFFIX = ".fits.fz"


class InvalidID(ValueError):
    """Not a CFHT observation ID."""


def check(observation_id: object) -> str:
    """Return the ID if it is one, else raise :class:`InvalidID` saying why."""
    if not isinstance(observation_id, str):
        raise InvalidID(f"observation ID {observation_id!r} is not a string")
    shown = observation_id if len(observation_id) <= 40 else observation_id[:40] + "…"
    if not _ID.fullmatch(observation_id) or not observation_id.isascii():
        raise InvalidID(
            f"observation ID {shown!r} is not a CFHT ID: expected 6 to 8 digits and a lower-case letter, like 1056213p"
        )
    return observation_id


def check_all(ids: object, limit: int) -> list[str]:
    """Check a whole list before anything starts; every bad entry is named (up to 10)."""
    if not isinstance(ids, (list, tuple)):
        raise InvalidID(f"ids must be a list of observation IDs, got {type(ids).__name__}")
    if len(ids) > limit:
        raise InvalidID(f"{len(ids)} observation IDs given; at most {limit} are allowed per batch (max_ids)")
    if not ids:
        raise InvalidID("no observation IDs given")
    bad = []
    for observation_id in ids:
        try:
            check(observation_id)
        except InvalidID as exc:
            bad.append(str(exc))
    if bad:
        more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        raise InvalidID("; ".join(bad[:10]) + more)
    return list(dict.fromkeys(ids))  # duplicates are done once


def file_name(observation_id: str) -> str:
    return check(observation_id) + SUFFIX


_COMPANION = re.compile(r"[A-Za-z0-9_.+-]+\.fits(\.fz)?")
_PLAIN = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def companion_name(pattern: str, observation_id: str, fits_file: bool = True) -> str:
    """The name of a file that goes with an exposure in the archive, such as its weight map:
    ``pattern`` with ``{id}`` replaced, ``{id}.weight.fits.fz`` -> ``1056213p.weight.fits.fz``.
    A pattern that does not name one plain file per ID (a FITS file unless ``fits_file`` is
    false: an external header is text) is refused (InvalidID), saying why."""
    if not isinstance(pattern, str) or pattern.count("{id}") != 1:
        raise InvalidID(f"file name pattern {pattern!r} must hold {{id}} once, like {{id}}.weight.fits.fz")
    name = pattern.replace("{id}", check(observation_id))
    if not (_COMPANION if fits_file else _PLAIN).fullmatch(name) or name == file_name(observation_id):
        kind = "a plain .fits or .fits.fz file name" if fits_file else "a plain file name"
        raise InvalidID(f"file name pattern {pattern!r} gives {name!r}: expected {kind} "
                        "(letters, digits, . _ + -) other than the exposure's own")
    return name


def observation_id_of(name: str) -> str | None:
    """The ID of an archive file name such as ``1056213p.fits.fz``, or None."""
    if not name.endswith(SUFFIX):
        return None
    stem = name[: -len(SUFFIX)]
    return stem if _ID.fullmatch(stem) else None
