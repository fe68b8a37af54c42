"""The user's OpenStack project, through openstacksdk only.

``openstack.connect()`` reads a sourced ``*-openrc.sh`` environment or a
``clouds.yaml`` cloud by name, as the ``openstack`` command does.  Names
(image, flavour, key pair, network) are resolved once per cycle and a missing
one is a clear error.  Our VMs carry metadata naming the provisioner, so they
are found again after any crash and a VM that is not ours is never touched.
Passwords, tokens and user data never reach a log or a message.
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

from .errors import NotFound, PermanentError, PermissionDenied, TransientError

#: Metadata key marking a VM as booted by this project's provisioning, valued with its provisioner id.
OWNER_KEY = "canfar-catalogue"
TAG = "canfar-catalogue"


class QuotaExceeded(PermanentError):
    """Nova refused a boot for quota; the next cycle tries again with what is left."""


@dataclass(frozen=True)
class Server:
    """What the provisioning needs to know of a VM."""

    id: str
    name: str
    status: str
    created: float
    updated: float
    metadata: dict[str, str] = field(default_factory=dict)

    def ours(self, provisioner: str) -> bool:
        return self.metadata.get(OWNER_KEY) == provisioner


@dataclass(frozen=True)
class Resolved:
    image_id: str
    flavour_id: str
    cores: int
    ram_mb: int
    network_id: str
    keypair: str


@dataclass(frozen=True)
class Headroom:
    """What the project may still start: quota minus everything it runs, ours or not."""

    instances: int
    cores: int
    ram_mb: int


def _time(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=timezone.utc).timestamp()


@contextmanager
def translated(what: str) -> Iterator[None]:
    """openstacksdk's and keystoneauth's exceptions as ours, with ``what`` in the message."""
    from keystoneauth1 import exceptions as auth
    from openstack import exceptions as sdk

    try:
        yield
    except auth.Unauthorized:
        raise PermissionDenied(
            f"{what}: OpenStack did not accept the credentials (401); source your project's openrc again or "
            "renew the application credential in clouds.yaml"
        ) from None
    except (auth.ConnectFailure, auth.ConnectTimeout, auth.DiscoveryFailure) as exc:
        raise TransientError(f"{what}: cannot reach OpenStack: {type(exc).__name__}") from None
    except auth.ClientException as exc:
        raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
    except sdk.ResourceNotFound as exc:
        raise NotFound(f"{what}: {exc.details or exc}") from None
    except sdk.HttpException as exc:
        detail = f"{exc.details or exc}"
        if exc.status_code == 413 or "quota" in detail.lower():
            raise QuotaExceeded(f"{what}: quota exceeded: {detail}") from None
        if exc.status_code == 403:
            raise PermissionDenied(f"{what}: forbidden (403): {detail}") from None
        if exc.status_code and exc.status_code < 500:
            raise PermanentError(f"{what}: {exc.status_code}: {detail}") from None
        raise TransientError(f"{what}: {exc.status_code}: {detail}") from None
    except sdk.SDKException as exc:  # timeouts, a VM that went to ERROR while waited for
        raise TransientError(f"{what}: {exc}") from None


class Cloud:
    """One OpenStack project, for one provisioner."""

    def __init__(self, cloud: str = "", api_timeout: float = 60, retries: int = 2, connection=None):
        """``connection``: an ``openstack.connection.Connection`` made elsewhere (the Nova integration suite)."""
        import openstack

        if connection is not None:
            self.connection = connection
            return
        with translated(f"connecting to OpenStack{f' cloud {cloud!r}' if cloud else ''}"):
            self.connection = openstack.connect(
                cloud=cloud or None, api_timeout=api_timeout, connect_retries=retries, status_code_retries=retries
            )
            self.connection.session.get_token()  # fails here, with keystoneauth's own exception, on bad credentials

    def resolve(self, image: str, flavour: str, keypair: str, network: str) -> Resolved:
        compute = self.connection.compute
        with translated(f"flavour {flavour!r}"):
            flavour_ = compute.find_flavor(flavour, ignore_missing=False)
        with translated(f"key pair {keypair!r}"):
            keypair_ = compute.find_keypair(keypair, ignore_missing=False)
        with translated(f"image {image!r}"):
            image_ = self.connection.image.find_image(image, ignore_missing=False)
        with translated(f"network {network!r}"):
            network_ = self.connection.network.find_network(network, ignore_missing=False)
        return Resolved(image_.id, flavour_.id, int(flavour_.vcpus), int(flavour_.ram), network_.id, keypair_.name)

    def headroom(self) -> Headroom:
        with translated("reading the project's quota"):
            absolute = self.connection.compute.get_limits().absolute
        return Headroom(
            instances=int(absolute.instances) - int(absolute.instances_used),
            cores=int(absolute.total_cores) - int(absolute.total_cores_used),
            ram_mb=int(absolute.total_ram) - int(absolute.total_ram_used),
        )

    def servers(self) -> list[Server]:
        """Every server of the project, building and deleting ones included."""
        with translated("listing the project's servers"):
            found = list(self.connection.compute.servers(details=True))
        return [
            Server(s.id, s.name, s.status, _time(s.created_at), _time(s.updated_at), dict(s.metadata or {}))
            for s in found
        ]

    def boot(self, name: str, resolved: Resolved, user_data: str, metadata: dict[str, str]) -> str:
        with translated(f"booting {name}"):
            server = self.connection.compute.create_server(
                name=name,
                image_id=resolved.image_id,
                flavor_id=resolved.flavour_id,
                key_name=resolved.keypair,
                networks=[{"uuid": resolved.network_id}],
                user_data=base64.b64encode(user_data.encode()).decode(),
                metadata=metadata,
                tags=[TAG],
            )
        return server.id

    def wait_active(self, server_id: str, seconds: float, interval: float = 5) -> str:
        """The server's status once ACTIVE; a VM in ERROR or still building is left to the policy."""
        with translated(f"waiting for {server_id}"):
            server = self.connection.compute.get_server(server_id)
            server = self.connection.compute.wait_for_server(
                server, status="ACTIVE", failures=["ERROR"], interval=interval, wait=seconds
            )
        return server.status

    def delete(self, server_id: str, seconds: float, interval: float = 2) -> None:
        compute = self.connection.compute
        with translated(f"deleting {server_id}"):
            compute.delete_server(server_id, ignore_missing=True)
            server = compute.get_server(server_id) if compute.find_server(server_id) else None
            if server is not None:
                compute.wait_for_delete(server, interval=interval, wait=seconds)
