"""Will the credentials outlive the work?  Asked before anything is dispatched.

Boundaries that need a credential (the CADC archive, VOSpace) report how long
theirs remains valid through a ``credential_lifetime()`` method; local
folders need none and have no such method.
"""

from __future__ import annotations

from datetime import timedelta

from .errors import PermissionDenied


def require_lifetime(boundaries: list[object], needed: timedelta) -> None:
    """Fail early, naming the renewal step, when a credential expires before ``needed``."""
    for boundary in boundaries:
        lifetime = getattr(boundary, "credential_lifetime", None)
        if lifetime is None:
            continue
        remaining, renew = lifetime()
        if remaining < needed:
            hours = remaining.total_seconds() / 3600
            raise PermissionDenied(
                f"the credential for {boundary.uri} has {max(hours, 0):.1f} h left but this work needs "
                f"{needed.total_seconds() / 3600:.1f} h; renew it first: {renew}"
            )
