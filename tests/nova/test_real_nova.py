"""The OpenStack boundary against a real Nova API, in-process, with Nova's own functional-test fixtures.

Run by ``make test-nova`` in its own virtual environment (exact pins in
``requirements.txt``, wheels only): Nova 34 with its fake virt driver, SQLite
databases and a real Placement service, reached over HTTP through
wsgi-intercept by the real openstacksdk.  Boot, wait, list, quota and delete
go through ``canfar_catalogue.boundaries.cloud.Cloud``, the code the
provisioning flow runs.
"""

from __future__ import annotations

import openstack
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import integrated_helpers

from canfar_catalogue.boundaries.cloud import OWNER_KEY, Cloud, Resolved
from canfar_catalogue.boundaries.errors import NotFound


class RealNova(integrated_helpers._IntegratedTestBase):
    api_major_version = "v2.1"
    microversion = "latest"

    def _clear_attrs(self):
        """Nova's own runner clears test attributes after each test; under pytest that removes the test itself."""

    def setUp(self):
        super().setUp()
        fixture = self.api_fixture
        headers = {
            "X-Auth-User": "jdoe", "X-User-Id": "jdoe", "X-Auth-Project-Id": fixture.project_id,
            "X-Roles": "reader,member", "X-Auth-Token": "fake",
        }
        session = ks_session.Session(auth=noauth.NoAuth(), additional_headers=headers)
        connection = openstack.connection.Connection(
            session=session, compute_endpoint_override=fixture.base_url, compute_api_version="2"
        )
        self.cloud = Cloud(connection=connection)
        key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        connection.compute.create_keypair(name="jdoe-key", public_key=key.decode())
        flavour = connection.compute.find_flavor("m1.small", ignore_missing=False)
        self.resolved = Resolved(
            image_id=nova_fixtures.GlanceFixture.image1["id"], flavour_id=flavour.id, cores=int(flavour.vcpus),
            ram_mb=int(flavour.ram), network_id=nova_fixtures.NeutronFixture.network_1["id"], keypair="jdoe-key",
        )

    def test_boot_wait_list_and_delete_through_the_provisioning_boundary(self):
        before = self.cloud.headroom()
        metadata = {OWNER_KEY: "catalogue-megapipe", "vm_type": "megapipe:canfar-catalogue-0.1.0", "flavour": "m1.small"}
        server_id = self.cloud.boot("catalogue-megapipe-test-0", self.resolved, "#cloud-config\n", metadata)
        assert self.cloud.wait_active(server_id, seconds=60, interval=0.2) == "ACTIVE"
        listed = {s.id: s for s in self.cloud.servers()}
        assert listed[server_id].ours("catalogue-megapipe") and listed[server_id].status == "ACTIVE"
        tagged = list(self.cloud.connection.compute.servers(details=True, tags="canfar-catalogue"))
        assert [s.id for s in tagged] == [server_id]
        after = self.cloud.headroom()
        assert after.instances == before.instances - 1 and after.cores == before.cores - self.resolved.cores
        self.cloud.delete(server_id, seconds=60, interval=0.2)
        assert server_id not in {s.id for s in self.cloud.servers()}

    def test_an_unknown_server_and_flavour_are_named(self):
        self.cloud.delete("00000000-0000-0000-0000-000000000000", seconds=5, interval=0.2)  # already gone: fine
        try:
            self.cloud.resolve("any-image", "no-such-flavour", "jdoe-key", "any-network")
        except NotFound as exc:
            assert "flavour 'no-such-flavour'" in str(exc)
        else:
            raise AssertionError("an unknown flavour was resolved")
