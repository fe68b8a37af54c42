"""A stateful fake OpenStack (Keystone, Nova, Glance, Neutron) under the real openstacksdk.

``requests_mock`` answers every HTTP request the SDK makes; Keystone's token
comes from ``keystoneauth1.fixture.V3Token``.  Servers go BUILD → ACTIVE (or
ERROR, or stay in BUILD) as they are polled, count against the quota, and are
DELETING then gone after a delete.  Faults: refused credentials, an API that
times out, quota exceeded on boot, a VM that errors or never leaves BUILD, a
delete that fails.  Test code, not a product feature.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import requests
import requests_mock
from keystoneauth1 import fixture

AUTH = "https://keystone.test/v3"
NOVA = "https://nova.test/v2.1"
GLANCE = "https://glance.test"
NEUTRON = "https://neutron.test"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeServer:
    id: str
    name: str
    metadata: dict
    flavour: dict
    status: str = "BUILD"
    created: str = field(default_factory=_now)
    updated: str = field(default_factory=_now)
    polls: int = 0
    fate: str = "active"  # "active", "error", "stuck"

    def json(self) -> dict:
        return {
            "id": self.id, "name": self.name, "status": self.status, "created": self.created, "updated": self.updated,
            "metadata": self.metadata, "tags": [], "flavor": {"id": self.flavour["id"]}, "image": {"id": "img-1"},
            "addresses": {}, "links": [],
        }


class FakeOpenStack:
    def __init__(self, user: str = "jdoe", password: str = "secret", project: str = "megapipe"):
        self.password = password
        self.token = fixture.V3Token(user_name=user, project_name=project, project_id="p-1")
        for kind, name, url in (("compute", "nova", NOVA), ("image", "glance", GLANCE), ("network", "neutron", NEUTRON)):
            self.token.add_service(kind, name=name).add_standard_endpoints(public=url, region="RegionOne")
        self.flavours = [{"id": "f-1", "name": "c2-7.5gb-30", "vcpus": 2, "ram": 7680, "disk": 30}]
        self.images = [{"id": "img-1", "name": "canfar-catalogue-test", "status": "active"}]
        self.keypairs = ["jdoe-key"]
        self.networks = [{"id": "net-1", "name": "megapipe-vlan"}]
        self.quota = {"instances": 8, "cores": 16, "ram": 8 * 7680}
        self.servers: dict[str, FakeServer] = {}
        self.faults: dict[str, int] = {}  # fault name -> how many more times
        self.next_fate: list[str] = []  # fates of the next servers booted
        self.requests: list[tuple[str, str, str]] = []  # (method, url, body)
        self.on_active: Callable[[FakeServer], None] | None = None
        self.deleted: list[str] = []
        self._crash_next = False

    # -- test controls ---------------------------------------------------------------------------
    def fault(self, name: str, times: int = 1_000_000) -> None:
        self.faults[name] = times

    def _take(self, name: str) -> bool:
        if self.faults.get(name, 0) > 0:
            self.faults[name] -= 1
            return True
        return False

    def add_stranger(self, name: str = "someone-elses-vm") -> FakeServer:
        server = FakeServer(str(uuid.uuid4()), name, {}, self.flavours[0], status="ACTIVE")
        self.servers[server.id] = server
        return server

    def environment(self) -> dict[str, str]:
        """What sourcing the project's openrc.sh sets."""
        return {
            "OS_AUTH_URL": AUTH, "OS_USERNAME": "jdoe", "OS_PASSWORD": self.password, "OS_PROJECT_NAME": "megapipe",
            "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": "RegionOne",
            "OS_IDENTITY_API_VERSION": "3", "OS_INTERFACE": "public",
        }

    def __enter__(self) -> "FakeOpenStack":
        self._mocker = requests_mock.Mocker()
        self._mocker.__enter__()
        self._mocker.register_uri(requests_mock.ANY, requests_mock.ANY, text=self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._mocker.__exit__(*exc)

    # -- the services ------------------------------------------------------------------------------
    def _handle(self, request, context) -> str:
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        self.requests.append((request.method, request.url, body))
        if self._take("timeout"):
            raise requests.exceptions.ConnectTimeout("the API did not answer")
        if self._crash_next:  # the process dies right after a boot: nothing more reaches the cloud
            self._crash_next = False
            raise RuntimeError("the provisioning process died")
        url = request.url
        if url.startswith(AUTH):
            return self._keystone(request, context, body)
        if request.headers.get("X-Auth-Token") is None:
            context.status_code = 401
            return json.dumps({"error": {"code": 401, "message": "no token"}})
        if url.startswith(NOVA) or url.rstrip("/") == "https://nova.test":
            return self._nova(request, context, body)
        if url.startswith(GLANCE):
            return self._catalogue(request, context, GLANCE, ("v2", "v2.15"), "image", self.images, wrapped=False)
        if url.startswith(NEUTRON):
            return self._catalogue(request, context, NEUTRON, ("v2.0", "v2.0"), "network", self.networks, wrapped=True)
        context.status_code = 404
        return "{}"

    def _keystone(self, request, context, body: str) -> str:
        if request.method == "GET":
            return json.dumps({"version": {"id": "v3.14", "status": "stable", "links": [{"rel": "self", "href": AUTH + "/"}]}})
        password = json.loads(body)["auth"]["identity"].get("password", {}).get("user", {}).get("password")
        if password != self.password or self._take("unauthorized"):
            context.status_code = 401
            return json.dumps({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}})
        context.status_code = 201
        context.headers["X-Subject-Token"] = "fake-token"
        return json.dumps(self.token)

    def _nova(self, request, context, body: str) -> str:
        path = request.path.split("/v2.1", 1)[-1].rstrip("/")
        method = request.method
        if path in ("", "/"):
            return json.dumps({"version": {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1",
                                           "links": [{"rel": "self", "href": NOVA + "/"}]}})
        if path == "/flavors/detail":
            return json.dumps({"flavors": self.flavours})
        if match := re.fullmatch(r"/flavors/([^/]+)", path):
            found = [f for f in self.flavours if f["id"] == match.group(1)]
            return self._one("flavor", found, context)
        if path == "/os-keypairs":
            return json.dumps({"keypairs": [{"keypair": {"name": k, "type": "ssh"}} for k in self.keypairs]})
        if match := re.fullmatch(r"/os-keypairs/([^/]+)", path):
            found = [{"name": k, "type": "ssh"} for k in self.keypairs if k == match.group(1)]
            return self._one("keypair", found, context)
        if path == "/limits":
            used = [s for s in self.servers.values() if s.status != "DELETED"]
            absolute = {
                "maxTotalInstances": self.quota["instances"], "totalInstancesUsed": len(used),
                "maxTotalCores": self.quota["cores"], "totalCoresUsed": sum(s.flavour["vcpus"] for s in used),
                "maxTotalRAMSize": self.quota["ram"], "totalRAMUsed": sum(s.flavour["ram"] for s in used),
            }
            return json.dumps({"limits": {"absolute": absolute, "rate": []}})
        if path == "/servers" and method == "POST":
            return self._boot(json.loads(body)["server"], context)
        if path == "/servers/detail":
            for server in list(self.servers.values()):
                self._advance(server)
            return json.dumps({"servers": [s.json() for s in self.servers.values()]})
        if match := re.fullmatch(r"/servers/([^/]+)", path):
            server = self.servers.get(match.group(1))
            if server is None:
                context.status_code = 404
                return json.dumps({"itemNotFound": {"code": 404, "message": "Instance could not be found."}})
            if method == "DELETE":
                if self._take("delete-fails"):
                    context.status_code = 500
                    return json.dumps({"computeFault": {"code": 500, "message": "delete failed"}})
                server.status, server.updated = "DELETING", _now()
                context.status_code = 204
                return ""
            self._advance(server)
            if server.id not in self.servers:
                context.status_code = 404
                return json.dumps({"itemNotFound": {"code": 404, "message": "Instance could not be found."}})
            return json.dumps({"server": server.json()})
        context.status_code = 404
        return json.dumps({"itemNotFound": {"code": 404, "message": f"no {path}"}})

    def _one(self, kind: str, found: list, context) -> str:
        if not found:
            context.status_code = 404
            return json.dumps({"itemNotFound": {"code": 404, "message": f"{kind} not found"}})
        return json.dumps({kind: found[0]})

    def _boot(self, wanted: dict, context) -> str:
        used = [s for s in self.servers.values() if s.status != "DELETED"]
        if self._take("quota") or len(used) >= self.quota["instances"]:
            context.status_code = 403
            return json.dumps({"forbidden": {"code": 403, "message": f"Quota exceeded for instances: Requested 1, but already used {len(used)} of {self.quota['instances']} instances"}})
        flavour = next(f for f in self.flavours if f["id"] == wanted["flavorRef"])
        server = FakeServer(str(uuid.uuid4()), wanted["name"], wanted.get("metadata", {}), flavour)
        server.fate = self.next_fate.pop(0) if self.next_fate else "active"
        server.user_data = wanted.get("user_data", "")
        self.servers[server.id] = server
        self._crash_next = self._take("crash-after-boot")
        context.status_code = 202
        return json.dumps({"server": {"id": server.id, "links": [], "adminPass": "x"}})

    def _advance(self, server: FakeServer) -> None:
        """Each look at a server moves it along its fate."""
        server.polls += 1
        if server.status == "BUILD" and server.fate != "stuck":
            server.status, server.updated = ("ERROR" if server.fate == "error" else "ACTIVE"), _now()
            if server.status == "ACTIVE" and self.on_active:
                self.on_active(server)
        elif server.status == "DELETING":
            del self.servers[server.id]
            self.deleted.append(server.id)

    def _catalogue(
        self, request, context, root: str, version: tuple[str, str], kind: str, items: list[dict], wrapped: bool
    ) -> str:
        """Glance and Neutron as openstacksdk reads them: the version document, a list by name, one by id.

        Glance answers one image bare; Neutron wraps a network in its kind.
        """
        prefix, current = version  # the URL's version, and the API version the service reports
        path = request.path.rstrip("/")
        collection = f"/{prefix}/{kind}s"
        if path == "":
            links = [{"rel": "self", "href": f"{root}/{prefix}/"}]
            return json.dumps({"versions": [{"id": current, "status": "CURRENT", "links": links}]})
        if path == collection:
            name = request.qs.get("name", [None])[0]
            return json.dumps({f"{kind}s": [i for i in items if name is None or i["name"] == name]})
        if match := re.fullmatch(re.escape(collection) + r"/([^/]+)", path):
            found = [i for i in items if i["id"] == match.group(1)]
            if wrapped:
                return self._one(kind, found, context)
            if found:
                return json.dumps(found[0])
        context.status_code = 404
        return "{}"
