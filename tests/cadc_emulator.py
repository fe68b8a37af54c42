"""A loopback emulator of the CADC services, for the real ``cadcdata``, ``vos`` and ``cadctap`` clients.

It serves HTTPS with a throwaway certificate authority, so client-certificate
authentication really happens: authenticated endpoints answer 401 to a
request without the configured proxy certificate or token.  The clients find
it through the CADC registry cache (``$HOME/.config/cadc-registry/resource-caps``),
which :meth:`CadcEmulator.point_registry` writes.

Services: capabilities and availability for raven (archive files), data,
vault (VOSpace: nodes, files, ``synctrans`` push/pull negotiation, async move),
gms (login), cred (proxy certificates for ``.netrc`` users) and argus (TAP).

Faults are injected per request with :meth:`CadcEmulator.fault`: an HTTP
status (with or without a body), a slow answer, a truncated body, a wrong
checksum, a corrupted or dropped upload, a failing move.  Every request is
recorded in ``requests``.

Moves follow the real vault (opencadc/vos ``cadc-vos-server``,
``transfers/InternalTransferAction.java``): a move is a rename, a move onto an
existing data node fails with DuplicateNode, and a failed job's ``/error``
reads ``<Fault>: <detail>`` (``NodeFault.getStatus``), except PermissionDenied,
which ``TransferRunner`` writes bare.  A ``move-fails`` fault names the fault
to answer with, and may match the move's ``source`` or ``destination`` node:
every move posts to the same ``/vault/transfers`` paths.
This is test code, not a product feature.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse
from xml.etree import ElementTree

import trustme

VOSNS = "http://www.ivoa.net/xml/VOSpace/v2.0"
XSINS = "http://www.w3.org/2001/XMLSchema-instance"
CORE = "ivo://ivoa.net/vospace/core"
CERT = "ivo://ivoa.net/sso#tls-with-certificate"
TOKEN = "ivo://ivoa.net/sso#token"
BASIC = "ivo://ivoa.net/sso#BasicAA"
COOKIE = "ivo://ivoa.net/sso#cookie"
VAULT = "vos://cadc.nrc.ca!vault"

# service -> (resource ID, [(standard ID, path under the service, security methods)])
SERVICES = {
    "raven": ("ivo://cadc.nrc.ca/global/raven", [("http://www.opencadc.org/std/storage#files-1.0", "files", [CERT, TOKEN])]),
    "data": ("ivo://cadc.nrc.ca/data", [("http://www.opencadc.org/std/storage#files-1.0", "files", [CERT, TOKEN])]),
    "vault": (
        "ivo://cadc.nrc.ca/vault",
        [
            ("ivo://ivoa.net/std/VOSpace/v2.0#nodes", "nodes", [CERT, TOKEN]),
            ("ivo://ivoa.net/std/VOSpace#files-proto", "files", [CERT, TOKEN]),
            ("ivo://ivoa.net/std/VOSpace#sync-2.1", "synctrans", [CERT, TOKEN]),
            ("ivo://ivoa.net/std/VOSpace/v2.0#transfers", "transfers", [CERT, TOKEN]),
        ],
    ),
    "gms": ("ivo://cadc.nrc.ca/gms", [("ivo://ivoa.net/std/UMS#login-0.1", "login", [None])]),
    "cred": ("ivo://cadc.nrc.ca/cred", [("ivo://ivoa.net/std/CDP#proxy-1.0", "proxy", [BASIC])]),
    "argus": ("ivo://cadc.nrc.ca/argus", [("ivo://ivoa.net/std/TAP", "", [CERT, TOKEN])]),
}


@dataclass
class Fault:
    """What to do instead of the normal answer, for requests matching ``method`` and ``path``."""

    method: str
    path: str  # a regular expression searched in the request path
    action: str  # "status", "slow", "reset", "truncate", "bad-md5", "corrupt-upload", "drop-upload", "move-fails"
    status: int = 500
    seconds: float = 0.0
    body: bool = True  # with "status": send the status with a text body, or with none
    name: str = "InternalFault"  # with "move-fails": the fault the move's job ends in
    source: str | None = None  # with "move-fails": a regular expression searched in the move's source node
    destination: str | None = None  # ... and in its destination node
    times: int = 1_000_000
    hits: int = 0


@dataclass
class Node:
    kind: str  # "container" or "data"
    data: bytes = b""
    created: float = field(default_factory=time.time)


@dataclass
class Exposure:
    data: bytes
    observed: datetime


class CadcEmulator:
    """State and configuration; :meth:`start` serves it on 127.0.0.1."""

    def __init__(self, folder: Path, user: str = "jdoe"):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = folder / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.user = user
        self.token = "tok-" + uuid.uuid4().hex
        self.password = "pw-" + uuid.uuid4().hex
        self.allowed_users = {user}
        self.archive: dict[str, Exposure] = {}  # file name -> exposure
        self.nodes: dict[str, Node] = {}  # "space/path" -> node
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, who)
        self.jobs: dict[str, dict] = {}
        self.errors: list[str] = []  # tracebacks of the emulator itself: a test should find none
        self.move_seconds = 0.0  # how long a move job stays EXECUTING (0: it completes as it starts)
        self.preauth = uuid.uuid4().hex
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- set-up -----------------------------------------------------------------------
    def issue_proxy(self, path: Path, days: float = 10, user: str | None = None) -> Path:
        """A client certificate and key for ``user``, valid ``days`` (negative: already expired)."""
        now = datetime.now(timezone.utc)
        not_after = now + timedelta(days=days)
        not_before = min(now - timedelta(days=1), not_after - timedelta(days=1))
        certificate = self.ca.issue_cert(
            f"{user or self.user}@cadc.test", common_name=user or self.user, not_before=not_before, not_after=not_after
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        certificate.private_key_and_cert_chain_pem.write_to_path(str(path))
        path.chmod(0o600)
        return path

    def add_exposure(self, name: str, data: bytes, observed: datetime | None = None) -> None:
        self.archive[name] = Exposure(data, observed or datetime.now(timezone.utc))

    def fault(self, method: str, path: str, action: str = "status", **options) -> Fault:
        injected = Fault(method, path, action, **options)
        with self.lock:
            self.faults.append(injected)
        return injected

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def point_registry(self, home: Path) -> None:
        """Write the registry cache the CADC clients read, pointing every service here."""
        registry = home / ".config" / "cadc-registry"
        if registry.exists():
            for cached in registry.rglob("*"):
                if cached.is_file():
                    cached.unlink()
        registry.mkdir(parents=True, exist_ok=True)
        lines = [f"{resource} = {self.url}/{name}/capabilities" for name, (resource, _) in SERVICES.items()]
        (registry / "resource-caps").write_text("\n".join(lines) + "\n")

    def start(self) -> "CadcEmulator":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self.ca.configure_trust(context)
        context.verify_mode = ssl.CERT_OPTIONAL
        emulator = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                try:
                    request = context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                try:
                    self.RequestHandlerClass(request, client_address, self, emulator)
                except (ConnectionError, TimeoutError, ssl.SSLError):
                    pass
                except Exception:
                    self.handle_error(request, client_address)

            def handle_error(self, request, client_address):
                import traceback

                emulator.errors.append(traceback.format_exc())

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def finish_move(self, job: dict, fault: Fault | None) -> None:
        """A move job's end: renamed, or ERROR with the vault's text."""
        source, destination = job["source"], job["destination"]
        with self.lock:
            if fault and fault.action == "move-fails":
                job["phase"], job["error"] = "ERROR", _job_error(fault.name, f"/{source}")
            elif source not in self.nodes:
                job["phase"], job["error"] = "ERROR", _job_error("NodeNotFound", f"/{source}")
            elif destination in self.nodes:
                job["phase"] = "ERROR"
                job["error"] = _job_error("DuplicateNode", f"destination is an existing DataNode: /{destination}")
            else:
                self.nodes[destination] = self.nodes.pop(source)
                job["phase"] = "COMPLETED"

    # -- helpers used by the handler --------------------------------------------------
    def take_fault(self, method: str, path: str, moving: tuple[str, str] | None = None) -> Fault | None:
        """The first fault matching the request.  Faults naming a ``source`` or ``destination`` node
        are looked up apart, when a move runs (``moving``: its source and destination)."""
        with self.lock:
            for fault in self.faults:
                if (fault.source is None and fault.destination is None) != (moving is None):
                    continue
                if moving and not all(re.search(pattern, node) for pattern, node
                                      in zip((fault.source, fault.destination), moving) if pattern is not None):
                    continue
                if fault.method in (method, "*") and re.search(fault.path, path) and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def visible(self, prefix: str = "") -> dict[str, bytes]:
        """Data nodes under ``prefix`` (``space/path``), as a reader would list them."""
        with self.lock:
            return {k: n.data for k, n in self.nodes.items() if n.kind == "data" and k.startswith(prefix)}

    def capabilities(self, name: str) -> bytes:
        base = f"{self.url}/{name}"
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
            'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',
        ]
        entries = [
            ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities", [None]),
            ("ivo://ivoa.net/std/VOSI#availability", "availability", [None]),
            *SERVICES[name][1],
        ]
        for standard, path, methods in entries:
            parts.append(f'<capability standardID="{standard}">')
            for method in methods:
                security = f'<securityMethod standardID="{method}"/>' if method else ""
                url = f"{base}/{path}".rstrip("/")
                parts.append(
                    f'<interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="base">{url}</accessURL>{security}</interface>'
                )
            parts.append("</capability>")
        parts.append("</vosi:capabilities>")
        return "\n".join(parts).encode()


def _digest(data: bytes) -> str:
    return "md5=" + base64.b64encode(hashlib.md5(data).digest()).decode()


def _job_error(fault: str, detail: str) -> str:
    """A failed job's ``/error`` text as the real vault writes it: ``<Fault>: <detail>``, but
    PermissionDenied bare (``TransferRunner`` writes that one without its detail)."""
    return fault if fault == "PermissionDenied" else f"{fault}: {detail}"


def _node_xml(path: str, node: Node, children: list[tuple[str, Node]] = ()) -> bytes:
    def element(parent, node_path, item):
        kind = "vos:ContainerNode" if item.kind == "container" else "vos:DataNode"
        attributes = {"uri": f"{VAULT}/{node_path}", f"{{{XSINS}}}type": kind}
        node_element = (
            ElementTree.SubElement(parent, f"{{{VOSNS}}}node", attributes)
            if parent is not None
            else ElementTree.Element(f"{{{VOSNS}}}node", attributes)
        )
        properties = ElementTree.SubElement(node_element, f"{{{VOSNS}}}properties")
        values = {"length": str(len(item.data)), "date": datetime.fromtimestamp(item.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000")}
        if item.kind == "data":
            values["MD5"] = hashlib.md5(item.data).hexdigest()
        for key, value in values.items():
            ElementTree.SubElement(properties, f"{{{VOSNS}}}property", {"uri": f"{CORE}#{key}"}).text = value
        return node_element

    ElementTree.register_namespace("vos", VOSNS)
    ElementTree.register_namespace("xsi", XSINS)
    root = element(None, path, node)
    if node.kind == "container":
        listing = ElementTree.SubElement(root, f"{{{VOSNS}}}nodes")
        for child_path, child in children:
            element(listing, child_path, child)
    return ElementTree.tostring(root, xml_declaration=True, encoding="UTF-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, request, client_address, server, emulator: CadcEmulator):
        self.emulator = emulator
        super().__init__(request, client_address, server)

    def log_message(self, *args):
        pass

    # -- plumbing ------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _who(self) -> str | None:
        """The authenticated user: client certificate, or bearer token; None if anonymous."""
        certificate = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        if certificate:
            for entry in certificate.get("subject", ()):
                for key, value in entry:
                    if key == "commonName":
                        return value
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:] if authorization.lower().startswith("bearer ") else self.headers.get("X-CADC-DelegationToken")
        if token:
            return self.emulator.user if token == self.emulator.token else "?bad-token"
        return None

    def _authenticated(self) -> bool:
        who = self._who()
        if who is None or who.startswith("?"):
            self._send(401, b"authentication required")
            return False
        if who not in self.emulator.allowed_users:
            self._send(403, f"{who} may not access this".encode())
            return False
        return True

    def _dispatch(self) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        self.query = parse_qs(url.query)
        emulator = self.emulator
        with emulator.lock:
            emulator.requests.append((self.command, path, self._who() or "anon"))
        fault = emulator.take_fault(self.command, path)
        if fault and fault.action == "status":
            self._body()
            retry_after = {"Retry-After": "1"} if fault.status == 503 else {}
            return self._send(fault.status, f"injected {fault.status}".encode() if fault.body else b"", retry_after)
        if fault and fault.action == "reset":  # the connection drops before any answer
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault and fault.action == "slow":
            time.sleep(fault.seconds)
            fault = None
        self.fault = fault
        service, _, rest = path.strip("/").partition("/")
        if service not in SERVICES:
            return self._send(404, b"no such service")
        if rest == "capabilities":
            return self._send(200, emulator.capabilities(service), content_type="text/xml")
        if rest == "availability":
            body = b'<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0"><vosi:available>true</vosi:available></vosi:availability>'
            return self._send(200, body, content_type="text/xml")
        getattr(self, f"_{service}")(rest)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _dispatch

    # -- archive ---------------------------------------------------------------------------
    def _raven(self, rest: str) -> None:
        match = re.fullmatch(r"files/cadc:(\w+)/([^/]+)", rest)
        if not match or self.command not in ("GET", "HEAD"):
            return self._send(400, b"bad request")
        if not self._authenticated():
            return
        exposure = self.emulator.archive.get(match.group(2))
        if exposure is None:
            return self._send(404, f"{match.group(2)} not found".encode())
        self._serve_bytes(match.group(2), exposure.data, "application/fits")

    _data = _raven

    def _serve_bytes(self, name: str, data: bytes, content_type: str) -> None:
        digest = _digest(data)
        if self.fault and self.fault.action == "bad-md5":
            digest = _digest(data + b"x")
        headers = {
            "Content-Disposition": f'inline; filename="{name}"',
            "Digest": digest,
            "Last-Modified": formatdate(time.time(), usegmt=True),
        }
        if self.fault and self.fault.action == "truncate" and self.command == "GET":
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(200, data, headers, content_type)

    # -- VOSpace -----------------------------------------------------------------------------
    def _vault(self, rest: str) -> None:
        emulator = self.emulator
        section, _, node_path = rest.partition("/")
        node_path = node_path.strip("/")
        if section == "data":
            key, _, node_path = node_path.partition("/")
            if key != emulator.preauth:
                return self._send(403, b"bad pre-authorised URL")
            return self._vault_data(node_path)
        if not self._authenticated():
            return
        if section == "nodes":
            return self._vault_nodes(node_path)
        if section == "files":
            with emulator.lock:
                node = emulator.nodes.get(node_path)
            if node is None or node.kind != "data":
                return self._send(404, b"no such data node")
            return self._send(303, headers={"Location": f"{emulator.url}/vault/data/{emulator.preauth}/{node_path}"})
        if section == "synctrans" and self.command == "POST":
            return self._negotiate(self._body())
        if section == "xfer":
            job = emulator.jobs.get(node_path)
            if job is None:
                return self._send(404, b"no such job")
            return self._send(200, job["document"], content_type="text/xml")
        if section == "transfers":
            return self._transfers(node_path)
        self._send(400, b"bad request")

    def _target_path(self, uri: str) -> str:
        return urlparse(uri).path.strip("/") if uri.startswith("vos://") else uri.split(":", 1)[1].strip("/")

    def _negotiate(self, body: bytes) -> None:
        document = ElementTree.fromstring(body)
        target = self._target_path(document.findtext(f"{{{VOSNS}}}target"))
        direction = document.findtext(f"{{{VOSNS}}}direction")
        emulator = self.emulator
        parent = target.rpartition("/")[0]
        with emulator.lock:
            if direction == "pushToVoSpace" and parent and emulator.nodes.get(parent, Node("data")).kind != "container":
                return self._send(404, b"container not found")
            if direction == "pullFromVoSpace" and target not in emulator.nodes:
                return self._send(404, b"node not found")
        job = uuid.uuid4().hex[:10]
        protocol = "httpsput" if direction == "pushToVoSpace" else "httpsget"
        transfer = (
            f'<vos:transfer xmlns:vos="{VOSNS}" version="2.1"><vos:target>{VAULT}/{target}</vos:target>'
            f"<vos:direction>{direction}</vos:direction><vos:protocol uri=\"{CORE}#{protocol}\">"
            f"<vos:endpoint>{emulator.url}/vault/data/{emulator.preauth}/{target}</vos:endpoint></vos:protocol></vos:transfer>"
        )
        emulator.jobs[job] = {"document": transfer.encode(), "phase": "EXECUTING"}
        self._send(303, headers={"Location": f"{emulator.url}/vault/xfer/{job}"})

    def _transfers(self, rest: str) -> None:
        emulator = self.emulator
        if not rest and self.command == "POST":  # an asynchronous move
            document = ElementTree.fromstring(self._body())
            job = uuid.uuid4().hex[:10]
            emulator.jobs[job] = {
                "source": self._target_path(document.findtext(f"{{{VOSNS}}}target")),
                "destination": self._target_path(document.findtext(f"{{{VOSNS}}}direction")),
                "phase": "PENDING",
                "error": "",
            }
            return self._send(303, headers={"Location": f"{emulator.url}/vault/transfers/{job}"})
        job_id, _, what = rest.partition("/")
        job = emulator.jobs.get(job_id)
        if job is None:
            return self._send(404, b"no such job")
        if what == "phase" and self.command == "POST":
            self._body()
            self._move(job, f"/vault/transfers/{rest}")
            return self._send(303, headers={"Location": f"{emulator.url}/vault/transfers/{job_id}"})
        if what == "phase":
            return self._send(200, job["phase"].encode())
        if what == "error":
            return self._send(200, job.get("error", "").encode())
        self._send(200, f"<uws:job><uws:phase>{job['phase']}</uws:phase></uws:job>".encode(), content_type="text/xml")

    def _move(self, job: dict, path: str) -> None:
        """Run the job: at once, or, with ``move_seconds``, EXECUTING for that long as the real vault's
        asynchronous jobs are (the client polls the phase, sleeping 2 s, then 4 s ...)."""
        emulator = self.emulator
        fault = self.fault if self.fault and self.fault.action == "move-fails" else None
        fault = fault or emulator.take_fault(self.command, path, (job["source"], job["destination"]))
        if emulator.move_seconds > 0:
            job["phase"] = "EXECUTING"
            threading.Timer(emulator.move_seconds, emulator.finish_move, (job, fault)).start()
        else:
            emulator.finish_move(job, fault)

    def _vault_nodes(self, node_path: str) -> None:
        emulator = self.emulator
        if self.command == "GET":
            with emulator.lock:
                node = emulator.nodes.get(node_path)
                if node is None and "/" not in node_path:
                    node = emulator.nodes.setdefault(node_path, Node("container"))  # a user's home
                children = [
                    (key, child) for key, child in sorted(emulator.nodes.items()) if key.rpartition("/")[0] == node_path
                ]
            if node is None:
                return self._send(404, b"NodeNotFound")
            return self._send(200, _node_xml(node_path, node, children), content_type="text/xml")
        if self.command == "PUT":
            # vos writes its xmlns twice, which ElementTree refuses; the type is all we need
            kind = "container" if b"ContainerNode" in self._body() else "data"
            with emulator.lock:
                parent = node_path.rpartition("/")[0]
                if parent and parent not in emulator.nodes:
                    return self._send(404, b"ContainerNotFound")
                if node_path in emulator.nodes:
                    return self._send(409, b"DuplicateNode")
                emulator.nodes[node_path] = Node(kind)
                node = emulator.nodes[node_path]
            return self._send(201, _node_xml(node_path, node), content_type="text/xml")
        if self.command == "DELETE":
            with emulator.lock:
                if node_path not in emulator.nodes:
                    return self._send(404, b"NodeNotFound")
                del emulator.nodes[node_path]
            return self._send(200)
        if self.command == "POST":
            self._body()
            with emulator.lock:
                node = emulator.nodes.get(node_path)
            return self._send(200, _node_xml(node_path, node), content_type="text/xml") if node else self._send(404)
        self._send(400, b"bad request")

    def _vault_data(self, node_path: str) -> None:
        emulator = self.emulator
        if self.command in ("GET", "HEAD"):
            with emulator.lock:
                node = emulator.nodes.get(node_path)
            if node is None or node.kind != "data" or (self.command == "HEAD" and not node.data):
                return self._send(404, b"not found")
            return self._serve_bytes(node_path.rpartition("/")[2], node.data, "application/octet-stream")
        if self.command != "PUT":
            return self._send(400, b"bad request")
        if self.fault and self.fault.action == "drop-upload":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length // 2)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        data = self._body()
        if self.fault and self.fault.action == "corrupt-upload":
            data = data[:-1] + bytes([data[-1] ^ 0xFF]) if data else b"x"
        claimed = self.headers.get("digest")
        if claimed and claimed != _digest(data):
            return self._send(412, b"md5 mismatch")
        with emulator.lock:
            parent = node_path.rpartition("/")[0]
            if parent and emulator.nodes.get(parent, Node("data")).kind != "container":
                return self._send(404, b"container not found")
            node = emulator.nodes.get(node_path) or Node("data")
            node.data = data  # complete bytes only: a partial PUT never reaches here
            emulator.nodes[node_path] = node
        self._send(201, headers={"Digest": _digest(data)})

    # -- login, credentials, TAP -----------------------------------------------------------
    def _gms(self, rest: str) -> None:
        fields = parse_qs(self._body().decode())
        if fields.get("username") == [self.emulator.user] and fields.get("password") == [self.emulator.password]:
            return self._send(200, b"cookie-" + self.emulator.token.encode())
        self._send(401, b"login failed")

    def _cred(self, rest: str) -> None:
        authorization = self.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.emulator.user}:{self.emulator.password}".encode()).decode()
        if authorization != f"Basic {expected}":
            return self._send(401, b"login required")
        days = float(self.query.get("daysValid", ["10"])[0])
        path = self.emulator.folder / f"issued-{uuid.uuid4().hex}.pem"
        self.emulator.issue_proxy(path, days=days)
        pem = path.read_bytes()
        path.unlink()
        self._send(200, pem, content_type="application/x-pem-file")

    def _argus(self, rest: str) -> None:
        if rest != "sync" or not self._authenticated():
            return None if rest == "sync" else self._send(404, b"no such endpoint")
        self._body()
        query = self.query.get("QUERY", [""])[0]
        collection = re.search(r"collection\s*=\s*'([^']*)'", query)
        since = re.search(r"time_bounds_lower\s*>=\s*([0-9.]+)", query)
        if not (collection and since and "MegaPrime" in query):
            return self._send(400, b"query not understood by the emulator")
        epoch = datetime(1858, 11, 17, tzinfo=timezone.utc)
        rows = []
        for name, exposure in self.emulator.archive.items():
            observed = (exposure.observed - epoch).total_seconds() / 86400
            product = name.split(".")[0]
            if collection.group(1) == "CFHT" and product.endswith("p") and observed >= float(since.group(1)):
                rows.append((observed, product))
        lines = ["productID\ttime_bounds_lower"] + [f"{p}\t{o:.6f}" for o, p in sorted(rows)]
        self._send(200, ("\n".join(lines) + "\n").encode(), content_type="text/tab-separated-values")
