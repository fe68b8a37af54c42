"""Will the credentials outlive the work?  Asked before anything is dispatched.

Boundaries that need a credential (the CADC archive, VOSpace) report how long
theirs remains valid through a ``credential_lifetime()`` method, and may renew
it through ``refresh_credential()``; local folders need none and have neither.
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


def refresh(boundaries: list[object]) -> list[str]:
    """Let each boundary renew a credential that runs short; returns the URIs that did."""
    renewed = []
    for boundary in boundaries:
        renew = getattr(boundary, "refresh_credential", None)
        if renew is not None and renew():
            renewed.append(boundary.uri)
    return renewed
