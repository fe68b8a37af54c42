"""Prefect's clients in one process share a TLS context; nothing else that asks ssl for one does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SHARED = textwrap.dedent("""
    import json, os, ssl, sys
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings
    from canfar_catalogue.worker import client_tls

    kept = []  # every context stays alive, so that no two can have the same id

    def contexts(*clients):
        made = [c._client._transport._pool._ssl_context for c in clients]
        kept.extend(made)
        return [id(c) for c in made]

    before = contexts(get_client(), get_client(), get_client(sync_client=True))
    shared = client_tls.share()
    after = contexts(get_client(), get_client(), get_client(sync_client=True))
    bundle = sys.argv[1]
    with temporary_settings({PREFECT_API_SSL_CERT_FILE: bundle}):
        first = contexts(get_client(), get_client())
        os.utime(bundle, ns=(0, 0))  # the CA file rotated in place
        rotated = contexts(get_client(), get_client())
    kept += [ssl.create_default_context() for _ in range(2)]  # the CADC clients' own, for instance
    others = [id(c) for c in kept[-2:]]
    print(json.dumps({"before": before, "shared": shared, "after": after, "first": first, "rotated": rotated,
                      "others": others, "again": client_tls.share()}))
""")


def test_prefects_clients_share_one_context_and_a_rotated_ca_file_makes_a_new_one(tmp_path):
    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(open(certifi.where(), "rb").read())
    env = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    said = json.loads(subprocess.run([sys.executable, "-c", SHARED, str(bundle)], capture_output=True, text=True,
                                     check=True, timeout=120, env=env).stdout.splitlines()[-1])
    assert len(set(said["before"])) == 3  # Prefect's own way: a context loaded for each client
    assert said["shared"] and said["again"]
    assert len(set(said["after"])) == 1  # one, for clients async and sync alike
    assert len(set(said["first"])) == 1 and said["first"][0] not in said["after"]  # another CA file, another context
    assert len(set(said["rotated"])) == 1 and said["rotated"][0] != said["first"][0]
    assert len(set(said["others"])) == 2  # ssl itself is untouched
