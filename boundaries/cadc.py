"""What the CADC archive and VOSpace share: the credential, and what the clients' errors mean.

A CANFAR user already has a credential: an X.509 proxy certificate written by
``cadc-get-cert -n`` (valid 10 days), a bearer token, or a ``.netrc`` entry
from which the proxy is renewed.  :class:`CadcAuth` reads which one from the
``[cadc]`` settings and hands it to the unmodified ``cadcdata`` and ``vos``
clients.  Secrets are read from files and passed in memory: never logged,
never put on a command line; messages name the file, not its content.

The clients retry 5xx answers themselves, sleeping 30 s or more between tries
(``cadcdata`` 2.5.2 then reports a 503 as a ``TypeError``).  We switch that
off and let the Prefect task retry with its own back-off, so there is one
retry mechanism and a user gets an answer in bounded time.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from .. import config
from .errors import NotFound, PermanentError, PermissionDenied, TransientError

RENEW = "cadc-get-cert -n"
METHODS = ("certificate", "netrc", "token")


@dataclass(frozen=True)
class CadcAuth:
    """The credential the CADC clients use, as the ``[cadc]`` settings name it."""

    method: str
    certificate: Path
    token_file: Path
    netrc: Path
    proxy_days: int = 10
    renew_below: timedelta = timedelta(days=2)

    @classmethod
    def from_settings(cls, section: dict[str, Any] | None = None) -> "CadcAuth":
        section = section if section is not None else config.settings()["cadc"]
        method = section["auth"]
        if method not in METHODS:
            raise PermanentError(f"[cadc] auth = {method!r} is not one of {', '.join(METHODS)}; fix the settings file")
        return cls(
            method=method,
            certificate=Path(section["certificate"]).expanduser(),
            token_file=Path(section["token_file"]).expanduser(),
            netrc=Path(section["netrc"]).expanduser(),
            proxy_days=int(section["proxy_days"]),
            renew_below=timedelta(days=float(section["renew_below_days"])),
        )

    def token(self) -> str:
        try:
            token = self.token_file.read_text().strip()
        except OSError as exc:
            raise PermissionDenied(
                f"cannot read the CADC token file {self.token_file} ({exc.strerror}); write your token there, "
                "readable only by you (chmod 600)"
            ) from None
        if not token:
            raise PermissionDenied(f"the CADC token file {self.token_file} is empty")
        return token

    def _require_certificate(self) -> Path:
        if not self.certificate.is_file():
            raise PermissionDenied(f"no proxy certificate at {self.certificate}; create one with `{RENEW}`")
        return self.certificate

    def subject(self) -> Any:
        """A ``cadcutils.net.Subject`` for ``cadcdata`` and ``cadctap``."""
        from cadcutils import net

        if self.method == "token":
            return net.Subject(token=self.token())
        return net.Subject(certificate=str(self._require_certificate()))

    def vos_arguments(self) -> dict[str, str]:
        """The keyword arguments that make ``vos.Client`` use this credential."""
        if self.method == "token":
            return {"vospace_token": self.token()}
        return {"vospace_certfile": str(self._require_certificate())}

    def renewal(self) -> str:
        """What to do when the CADC refuses this credential, by its method."""
        if self.method == "token":
            return f"write a new token to {self.token_file}"
        if self.method == "netrc":
            return f"check your CADC entry in {self.netrc}"
        return f"check it is valid (`{RENEW}`)"

    def lifetime(self) -> tuple[timedelta, str]:
        """How long the credential stays valid, and how to renew it."""
        if self.method == "token":
            self.token()
            return timedelta.max, self.renewal()
        return proxy_lifetime(self._require_certificate()), RENEW

    def renew_if_short(self) -> bool:
        """With ``auth = "netrc"``: fetch a fresh proxy, as ``cadc-get-cert -n`` does, when
        less than ``renew_below_days`` remain.  Returns whether it renewed."""
        if self.method != "netrc":
            return False
        if self.certificate.is_file() and proxy_lifetime(self.certificate) >= self.renew_below:
            return False
        from cadcutils import net

        if not self.netrc.is_file():
            raise PermissionDenied(f"cannot renew the proxy certificate: no {self.netrc}; add your CADC login there")
        with translated(f"renewing the proxy certificate {self.certificate} from {self.netrc}", self):
            pem = net.get_cert(net.Subject(netrc=str(self.netrc)), days_valid=self.proxy_days)
        write_private(self.certificate, pem)
        return True


class UsesCadcCredential:
    """What the CADC archive and VOSpace both do with the credential: take it from
    the ``[cadc]`` settings, report how long it lasts, and renew it."""

    auth: CadcAuth

    def _use_credential(self, auth: CadcAuth | None) -> dict[str, Any]:
        """Set ``self.auth`` (from the settings unless given); returns the ``[cadc]`` settings."""
        settings = config.settings()["cadc"]
        trust(settings["ca_bundle"])
        self.auth = auth or CadcAuth.from_settings(settings)
        return settings

    def credential_lifetime(self) -> tuple[timedelta, str]:
        return self.auth.lifetime()

    def refresh_credential(self) -> bool:
        return self.auth.renew_if_short()


def proxy_lifetime(path: Path) -> timedelta:
    """Time left before the proxy certificate in ``path`` expires."""
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise PermissionDenied(f"{path} is not a readable PEM certificate ({exc}); create one with `{RENEW}`") from None
    return certificate.not_valid_after_utc - datetime.now(timezone.utc)


@dataclass(frozen=True)
class ProxyFile:
    """A proxy certificate file on its own, for ``credentials.require_lifetime`` (the htcondor worker's)."""

    path: Path

    @property
    def uri(self) -> str:
        return str(self.path)

    def credential_lifetime(self) -> tuple[timedelta, str]:
        return proxy_lifetime(self.path), RENEW


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def trust(ca_bundle: str) -> None:
    """Verify CADC's TLS certificates against ``ca_bundle`` instead of certifi's.

    The CADC clients ignore ``REQUESTS_CA_BUNDLE`` (their sessions do not read
    the environment), so a site that inspects TLS, or the test emulator,
    needs this setting.
    """
    if not ca_bundle:
        return
    import requests.adapters

    path = Path(ca_bundle).expanduser()
    if not path.is_file():
        raise PermanentError(f"[cadc] ca_bundle {path} does not exist")
    requests.adapters.DEFAULT_CA_BUNDLE_PATH = str(path)


def own_retries_off(client: Any) -> Any:
    """Stop a ``cadcutils`` web-service client from retrying 5xx by itself (see above)."""
    client.retry = False
    if client._session is not None:
        client._session.retry = False
    return client


@contextmanager
def translated(what: str, auth: CadcAuth | None = None) -> Iterator[None]:
    """Turn the CADC clients' exceptions into ours, with ``what`` in the message.

    An error from an HTTP answer names its status; one without an answer says
    what happened instead.  A refused credential's advice follows ``auth``'s
    method: a proxy certificate is renewed, a token rewritten, a .netrc entry checked.
    """
    import requests
    import urllib3
    from cadcutils import exceptions

    renewal = auth.renewal() if auth else f"check it is valid (`{RENEW}`)"
    try:
        yield
    except exceptions.NotFoundException as exc:
        raise NotFound(f"{what}: not found ({_status(exc, 404)})") from None
    except exceptions.UnauthorizedException as exc:
        raise PermissionDenied(f"{what}: the CADC did not accept the credential ({_status(exc, 401)}); {renewal}") from None
    except exceptions.ForbiddenException as exc:
        raise PermissionDenied(
            f"{what}: permission denied ({_status(exc, 403)}); check that your CADC account may access it"
        ) from None
    except exceptions.SslException as exc:
        advice = (
            "check the CADC's certificate authority ([cadc] ca_bundle)" if auth and auth.method == "token"
            else f"check the proxy certificate (`{RENEW}`)"
        )
        raise PermissionDenied(f"{what}: TLS failed ({exc}); {advice}") from None
    except exceptions.BadRequestException as exc:
        raise PermanentError(f"{what}: the CADC rejected the request ({_status(exc, 400)}): {exc}") from None
    except exceptions.ByteLimitException as exc:
        raise PermanentError(f"{what}: over the storage quota ({_status(exc, 413)})") from None
    except (
        exceptions.HttpException,
        requests.RequestException,
        urllib3.exceptions.HTTPError,  # a body cut short surfaces from urllib3 itself
        ConnectionError,
        TimeoutError,
    ) as exc:
        raise TransientError(f"{what}: {_short(exc)}") from None
    except TypeError as exc:
        # cadcdata 2.5.2 reports a 503 that outlasted its retries this way.
        raise TransientError(f"{what}: service unavailable (HTTP 503, {exc})") from None
    except OSError as exc:
        # vos reports errors as OSError whose errno is an errno or an HTTP status.
        if exc.errno in (errno.EACCES, errno.EPERM, 401, 403):
            raise PermissionDenied(f"{what}: permission denied ({exc.errno}): {exc.strerror or exc}") from None
        if exc.errno in (errno.ENOENT, 404):
            raise NotFound(f"{what}: not found ({exc.errno}): {exc.strerror or exc}") from None
        raise TransientError(f"{what}: {_short(exc)}") from None


def _response(exc: BaseException) -> Any:
    """The HTTP answer behind a client's exception, or None.

    ``is None`` and not truth: a ``requests.Response`` with a status of 400 or
    more is false, so ``response or other`` would drop every error's answer.
    """
    for candidate in (getattr(exc, "orig_exception", None), exc):
        response = getattr(candidate, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return response
    return None


def _status(exc: BaseException, default: int) -> str:
    """``HTTP 404 Not Found``: the answer's status, or ``default`` when the client kept no answer."""
    response = _response(exc)
    if response is None:
        from http import HTTPStatus

        return f"HTTP {default} {HTTPStatus(default).phrase}"
    return f"HTTP {response.status_code} {response.reason}"


def _short(exc: BaseException) -> str:
    """The exception in one line: the HTTP status when there was an answer, else what happened
    (cadcutils' own text is often empty, or the name of its exception class)."""
    import requests

    response = _response(exc)
    cause = getattr(exc, "orig_exception", None) or exc
    text = " ".join(str(exc).split())
    if response is not None:
        text = f"HTTP {response.status_code} {response.reason}" + (f": {text}" if text else "")
    elif isinstance(cause, (requests.Timeout, TimeoutError)):
        text = f"timed out ({text or type(exc).__name__})"
    elif isinstance(cause, (requests.ConnectionError, ConnectionError)):
        text = f"connection dropped ({text or type(exc).__name__})"
    else:
        text = text or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
