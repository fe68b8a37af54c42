"""The CADC archive and VOSpace boundaries, through the real cadcdata, vos and cadctap clients.

Every request goes over HTTPS to the emulator in ``cadc_emulator.py``; nothing
of ours is mocked.  Faults are injected on the wire and each must end as the
issue says: permanent errors at once and named, transient ones quickly and
retryable, and never a partial file or half-written node that looks complete.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from canfar_catalogue.boundaries.cadc import CadcAuth, proxy_lifetime
from canfar_catalogue.boundaries.cadc_archive import CadcArchive
from canfar_catalogue.boundaries.credentials import refresh, require_lifetime
from canfar_catalogue.boundaries.errors import NotFound, PermanentError, PermissionDenied, TransientError
from canfar_catalogue.boundaries.vospace import VOSpace

ID = "1056213p"
NAME = f"{ID}.fits.fz"


@pytest.fixture
def archive(cadc, small_exposure) -> CadcArchive:
    cadc.add_exposure(NAME, small_exposure.read_bytes())
    return CadcArchive("cadc:CFHT")


def _auth(**changes) -> CadcAuth:
    return dataclasses.replace(CadcAuth.from_settings(), **changes)


def _who_asked(cadc, path_part: str) -> set[str]:
    return {who for _, path, who in cadc.requests if path_part in path}


# -- archive ------------------------------------------------------------------------------
def test_download_with_the_proxy_certificate_verifies_the_md5(archive, small_exposure, tmp_path, cadc):
    import hashlib

    fetched = archive.fetch(ID, tmp_path)
    assert fetched.path == tmp_path / NAME
    assert fetched.md5 == hashlib.md5(small_exposure.read_bytes()).hexdigest()
    assert fetched.path.read_bytes() == small_exposure.read_bytes()
    assert sorted(os.listdir(tmp_path)) == [NAME]
    assert _who_asked(cadc, NAME) == {cadc.user}  # authenticated by the client certificate


def test_an_exposures_weight_map_comes_from_beside_it(archive, cadc, tmp_path):
    """``cadc:CFHT/<id>.weight.fits.fz``, by the same client, md5 checked; a missing one is NotFound, named."""
    import hashlib

    weights = b"SIMPLE  =                    T" + b" " * 2850
    cadc.add_exposure(f"{ID}.weight.fits.fz", weights)
    name = f"{ID}.weight.fits.fz"
    assert archive.checksum(ID, name) == hashlib.md5(weights).hexdigest()
    fetched = archive.fetch(ID, tmp_path, name)
    assert fetched.path == tmp_path / name and fetched.path.read_bytes() == weights
    assert sorted(os.listdir(tmp_path)) == [name]
    with pytest.raises(NotFound, match=r"1056213p.*cadc:CFHT/1056213p\.rms\.fits\.fz"):
        archive.checksum(ID, f"{ID}.rms.fits.fz")


def test_a_bearer_token_works_too(cadc, small_exposure, tmp_path):
    cadc.add_exposure(NAME, small_exposure.read_bytes())
    before = len(cadc.requests)
    archive = CadcArchive("cadc:CFHT", auth=_auth(method="token"))
    assert archive.fetch(ID, tmp_path).size == small_exposure.stat().st_size
    tokened = [r for r in cadc.requests[before:] if NAME in r[1]]
    assert tokened and {who for _, _, who in tokened} == {cadc.user}


def test_a_missing_observation_fails_at_once_and_is_named(archive, tmp_path):
    with pytest.raises(NotFound, match="1056999p.*404"):
        archive.fetch("1056999p", tmp_path)
    assert os.listdir(tmp_path) == []


def test_refused_credentials_are_permanent_and_say_what_to_check(cadc, archive, tmp_path):
    stranger = cadc.issue_proxy(tmp_path / "stranger.pem", user="mallory")
    with pytest.raises(PermissionDenied, match=f"{ID}.*HTTP 403 Forbidden"):
        CadcArchive("cadc:CFHT", auth=_auth(certificate=stranger)).checksum(ID)
    with pytest.raises(PermissionDenied, match="no proxy certificate at .*missing.pem.*cadc-get-cert -n"):
        CadcArchive("cadc:CFHT", auth=_auth(certificate=tmp_path / "missing.pem")).checksum(ID)


def test_the_advice_for_a_refused_credential_follows_its_method(cadc, archive, tmp_path):
    """A 401 says what to do with the credential in use: renew a proxy, rewrite a token, check .netrc."""
    bad_token = tmp_path / "token"
    bad_token.write_text("not-the-token")
    with pytest.raises(PermissionDenied, match=f"HTTP 401 Unauthorized.*write a new token to {bad_token}$") as refused:
        CadcArchive("cadc:CFHT", auth=_auth(method="token", token_file=bad_token)).checksum(ID)
    assert "cadc-get-cert" not in str(refused.value) and "proxy" not in str(refused.value)

    cadc.fault("*", NAME, status=401, times=2)
    with pytest.raises(PermissionDenied, match=r"HTTP 401 Unauthorized.*check it is valid \(`cadc-get-cert -n`\)$"):
        CadcArchive("cadc:CFHT").checksum(ID)
    netrc = tmp_path / "netrc"
    with pytest.raises(PermissionDenied, match=f"HTTP 401 Unauthorized.*check your CADC entry in {netrc}$"):
        CadcArchive("cadc:CFHT", auth=_auth(method="netrc", netrc=netrc)).checksum(ID)


@pytest.mark.parametrize("body", [True, False], ids=["with a body", "bodiless"])
def test_an_error_answer_names_its_status(cadc, archive, tmp_path, body):
    """A HEAD has no body, and a 503 may have none either: the status is still named."""
    cadc.fault("*", NAME, status=503, body=body)
    with pytest.raises(TransientError, match=f"{ID}.*HTTP 503 Service Unavailable") as looked:
        archive.checksum(ID)
    assert "UnexpectedException" not in str(looked.value)
    with pytest.raises(TransientError, match=f"{ID}.*HTTP 503 Service Unavailable"):
        archive.fetch(ID, tmp_path)
    cadc.clear_faults()
    cadc.fault("*", NAME, "reset")
    with pytest.raises(TransientError, match=f"{ID}.*connection dropped"):
        archive.checksum(ID)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient_and_answered_in_bounded_time(cadc, archive, tmp_path, status):
    """The clients' own 503 retries (30 s and more each) are off: the task retries instead."""
    cadc.fault("*", NAME, status=status)
    started = time.monotonic()
    with pytest.raises(TransientError, match=ID):
        archive.fetch(ID, tmp_path)
    assert time.monotonic() - started < 10
    assert os.listdir(tmp_path) == []
    cadc.clear_faults()
    assert archive.fetch(ID, tmp_path).path.is_file()  # and the next try works


@pytest.mark.parametrize("action", ["truncate", "bad-md5"])
def test_a_truncated_or_corrupt_download_never_looks_complete(cadc, archive, tmp_path, action):
    cadc.fault("GET", NAME, action)
    with pytest.raises(TransientError, match=ID):
        archive.fetch(ID, tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_slow_answer_still_arrives(cadc, archive, tmp_path):
    cadc.fault("GET", NAME, "slow", seconds=1.5, times=1)
    assert archive.fetch(ID, tmp_path).path.is_file()


def test_discovery_asks_tap_for_exposures_observed_since_a_date(cadc, small_exposure):
    now = datetime.now(timezone.utc)
    data = small_exposure.read_bytes()
    cadc.add_exposure("2000001p.fits.fz", data, observed=now - timedelta(days=30))
    cadc.add_exposure("2000003p.fits.fz", data, observed=now - timedelta(hours=2))
    cadc.add_exposure("2000002p.fits.fz", data, observed=now - timedelta(hours=5))
    cadc.add_exposure("2000004o.fits.fz", data, observed=now - timedelta(hours=1))  # raw, not processed
    found = CadcArchive("cadc:CFHT").list_since(now - timedelta(days=1))
    assert [i for i in found if i.startswith("2")] == ["2000002p", "2000003p"]


# -- VOSpace ------------------------------------------------------------------------------
def _catalogue(tmp_path: Path, text: str = "#   1 NUMBER\n         1\n") -> Path:
    path = tmp_path / f"{ID}.cat"
    path.write_text(text)
    return path


def test_upload_creates_containers_moves_into_place_and_reads_back(cadc, tmp_path):
    import hashlib

    destination = VOSpace("vos:jdoe/megacam/run1")
    local = _catalogue(tmp_path)
    assert destination.stat(local.name) is None
    md5 = destination.put(local, local.name)
    assert md5 == hashlib.md5(local.read_bytes()).hexdigest()
    assert cadc.visible("jdoe/megacam/run1/") == {f"jdoe/megacam/run1/{local.name}": local.read_bytes()}
    assert destination.stat(local.name) == md5
    assert destination.read(local.name) == local.read_bytes()

    puts = sum(1 for method, path, _ in cadc.requests if method == "PUT" and "/vault/data/" in path)
    destination.put(local, local.name)  # same md5: nothing is sent
    assert sum(1 for method, path, _ in cadc.requests if method == "PUT" and "/vault/data/" in path) == puts

    local.write_text("#   1 NUMBER\n         2\n")
    destination.put(local, local.name)  # a new catalogue replaces the old one
    assert destination.read(local.name) == local.read_bytes()
    assert local.exists()


@pytest.mark.parametrize(
    "method, action, status",
    [
        ("PUT", "status", 500),  # upload rejected
        ("PUT", "corrupt-upload", 0),  # bytes changed on the way: the server answers 412
        ("PUT", "drop-upload", 0),  # connection dropped mid-PUT
        ("POST", "move-fails", 0),  # stored, but the move into place fails
    ],
)
def test_upload_faults_leave_no_half_written_node_and_keep_the_local_copy(cadc, tmp_path, method, action, status):
    destination = VOSpace(f"vos:jdoe/faults/{action}")
    local = _catalogue(tmp_path)
    cadc.fault(method, "/vault/(data|transfers)/", action, status=status)
    with pytest.raises(TransientError):
        destination.put(local, local.name)
    assert cadc.visible(f"jdoe/faults/{action}/") == {}  # neither the catalogue nor a temporary node
    assert local.exists()
    cadc.clear_faults()
    destination.put(local, local.name)
    assert cadc.visible(f"jdoe/faults/{action}/") == {f"jdoe/faults/{action}/{local.name}": local.read_bytes()}


@pytest.mark.parametrize(
    "fault, error, retried",
    [
        pytest.param("NodeNotFound", NotFound, False, marks=pytest.mark.fault(
            "storage", "move fails: NodeNotFound", "permanent: not retried, the message names the fault")),
        pytest.param("PermissionDenied", PermissionDenied, False, marks=pytest.mark.fault(
            "storage", "move fails: PermissionDenied", "permanent: not retried, the message names the fault")),
        pytest.param("DuplicateNode", TransientError, True, marks=pytest.mark.fault(
            "storage", "move fails: DuplicateNode", "transient: the retried put reads the name again")),
        pytest.param("InternalFault", TransientError, True, marks=pytest.mark.fault(
            "storage", "move fails: InternalFault", "transient: retried")),
    ],
)
def test_a_failed_move_is_classed_by_the_fault_the_vault_names(cadc, tmp_path, record_property, fault, error, retried):
    """The vault writes ``<Fault>: <detail>``, which cadcutils turns into errno 14 whatever the fault."""
    from canfar_catalogue.tasks.policy import is_transient

    destination = VOSpace(f"vos:jdoe/moves/{fault}")
    local = _catalogue(tmp_path)
    cadc.fault("POST", "/vault/transfers/", "move-fails", name=fault, source=r"\.part$")
    with pytest.raises(error) as failed:
        destination.put(local, local.name)
    said = str(failed.value).split("answered ")[-1]
    record_property("did", f"{type(failed.value).__name__}, retried: {is_transient(failed.value)}: ...answered {said}")
    assert type(failed.value) is error and said.startswith(fault)
    assert is_transient(failed.value) is retried
    assert cadc.visible(f"jdoe/moves/{fault}/") == {}
    assert local.exists()


# -- replacing a file: the old one is never lost -------------------------------------------
def _replace_setup(cadc, tmp_path, space: str):
    destination = VOSpace(f"vos:{space}")
    old = _catalogue(tmp_path, "#   1 NUMBER\n         1\n")
    destination.put(old, old.name)
    before = old.read_bytes()
    new = tmp_path / "new" / old.name
    new.parent.mkdir()
    new.write_text("#   1 NUMBER\n         1\n         2\n")
    return destination, before, new


def _names(cadc, space: str) -> dict[str, bytes]:
    return {path.removeprefix(space + "/"): data for path, data in cadc.visible(space + "/").items()}


@pytest.mark.fault("storage", "replace: the move aside fails", "the old catalogue stays under its name; nothing else left")
def test_a_replace_whose_move_aside_fails_keeps_the_old_file(cadc, tmp_path, record_property):
    space = "jdoe/replace/aside"
    destination, before, new = _replace_setup(cadc, tmp_path, space)
    cadc.fault("POST", "/vault/transfers/", "move-fails", destination=r"previous$", times=1)
    with pytest.raises(TransientError) as failed:
        destination.put(new, new.name)
    record_property("did", str(failed.value)[-150:])
    assert _names(cadc, space) == {new.name: before}
    assert destination.put(new, new.name) and _names(cadc, space) == {new.name: new.read_bytes()}


@pytest.mark.fault("storage", "replace: the move in fails", "the old catalogue is moved back; the error names both nodes")
def test_a_replace_whose_move_in_fails_moves_the_old_file_back(cadc, tmp_path, record_property):
    space = "jdoe/replace/in"
    destination, before, new = _replace_setup(cadc, tmp_path, space)
    cadc.fault("POST", "/vault/transfers/", "move-fails", source=r"\.part$", times=1)
    with pytest.raises(TransientError) as failed:
        destination.put(new, new.name)
    message = str(failed.value)
    record_property("did", message[-150:])
    assert f"vos:{space}/{new.name}" in message and f"vos:{space}/.{new.name}.previous" in message
    assert "moved back" in message
    assert _names(cadc, space) == {new.name: before}
    assert destination.put(new, new.name) and _names(cadc, space) == {new.name: new.read_bytes()}


@pytest.mark.fault("storage", "replace: the move in and the move back fail",
                   "the old catalogue is kept aside, never deleted; the next put restores it, then replaces it")
def test_a_replace_that_cannot_move_the_old_file_back_keeps_it_aside(cadc, tmp_path, record_property):
    space = "jdoe/replace/back"
    destination, before, new = _replace_setup(cadc, tmp_path, space)
    cadc.fault("POST", "/vault/transfers/", "move-fails", source=r"\.part$", times=1)  # the move in
    cadc.fault("POST", "/vault/transfers/", "move-fails", source=r"previous$", name="NodeLocked", times=1)  # and back
    with pytest.raises(TransientError) as failed:
        destination.put(new, new.name)
    message = str(failed.value)
    aside = f".{new.name}.previous"
    assert f"kept as vos:{space}/{aside}" in message and "NodeLocked" in message
    assert _names(cadc, space) == {aside: before}  # no catalogue under the name, the old one kept aside
    assert destination.stat(new.name) is None  # the skip check finds nothing: the exposure runs again

    cadc.clear_faults()
    cadc.fault("PUT", "/vault/data/", status=500)  # the next put cannot upload: the old file is back all the same
    with pytest.raises(TransientError):
        destination.put(new, new.name)
    assert _names(cadc, space) == {new.name: before}
    cadc.clear_faults()
    destination.put(new, new.name)
    assert _names(cadc, space) == {new.name: new.read_bytes()}
    record_property("did", f"kept as {aside}; the next put moved it back, the one after replaced it")


@pytest.mark.fault("storage", "replace: the record's upload fails after the catalogue's",
                   "catalogue new, record old: the skip check refuses the pair, so the exposure runs again")
def test_a_replace_whose_record_fails_is_not_taken_for_done(cadc, tmp_path, record_property):
    from canfar_catalogue.boundaries.provenance import Provenance, is_done, stored
    from canfar_catalogue.tasks.upload import upload

    space = "jdoe/replace/record"

    def record(catalogue_text: str) -> tuple[Path, Provenance]:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        catalogue = folder / f"{ID}.cat"
        catalogue.write_text(catalogue_text)
        return catalogue, Provenance(observation_id=ID, input_md5="in", config_hash="cfg", catalogue_md5="", sources=1, ccds=1)

    upload.fn(*record("#   1 NUMBER\n         1\n"), f"vos:{space}")
    destination = VOSpace(f"vos:{space}")
    old_record = destination.read(f"{ID}.provenance.json")
    assert is_done(destination, ID, "in", "cfg")
    cadc.fault("POST", "/vault/transfers/", "move-fails", source=r"provenance\.json\..*\.part$")
    catalogue, new_record = record("#   1 NUMBER\n         1\n         2\n")
    with pytest.raises(TransientError):
        upload.fn(catalogue, new_record, f"vos:{space}")
    assert destination.read(f"{ID}.cat") == catalogue.read_bytes()  # the catalogue is new
    assert destination.read(f"{ID}.provenance.json") == old_record  # the record is old
    assert stored(destination, ID) is None and not is_done(destination, ID, "in", "cfg")
    record_property("did", "catalogue new, record old (moved back); not taken for done")


def test_a_replace_leaves_no_catalogue_under_its_name_only_between_its_two_moves(cadc, tmp_path):
    """What a reader sees while a file is replaced: the old file, then nothing under the name (the old
    one is listed as ``.<name>.previous``), then the new file; never a half-written one."""
    space = "jdoe/replace/window"
    destination, before, new = _replace_setup(cadc, tmp_path, space)
    seen = []
    real_move = VOSpace._move

    def watching(self, source, target):
        seen.append(sorted(_names(cadc, space)))
        real_move(self, source, target)

    VOSpace._move = watching
    try:
        destination.put(new, new.name)
    finally:
        VOSpace._move = real_move
    aside = f".{new.name}.previous"
    part = next(name for name in seen[0] if name.endswith(".part"))
    assert seen == [sorted([new.name, part]), sorted([aside, part])]  # before the move aside, then before the move in
    assert _names(cadc, space) == {new.name: new.read_bytes()}


def test_on_a_vault_whose_moves_take_time_a_reader_sees_the_old_file_nothing_or_the_new_one(cadc, tmp_path,
                                                                                            record_property):
    """The real vault runs a move as an asynchronous job, and the client looks at its phase, sleeps 2 s,
    and looks again.  A reader watching the name during a replace sees the old file, then for a while
    nothing, then the new one: never a half-written file, never the old one back."""
    import threading

    space = "jdoe/replace/slow"
    destination, before, new = _replace_setup(cadc, tmp_path, space)
    seen, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((time.monotonic(), cadc.visible(f"{space}/").get(f"{space}/{new.name}")))
            time.sleep(0.01)

    cadc.move_seconds = 0.3
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        destination.put(new, new.name)
    finally:
        cadc.move_seconds = 0.0
        stop.set()
        watcher.join()
    states = [data for _, data in seen]
    changes = [state for n, state in enumerate(states) if n == 0 or state != states[n - 1]]
    assert changes == [before, None, new.read_bytes()]
    empty = [moment for moment, data in seen if data is None]
    record_property("did", f"no file under the name for {empty[-1] - empty[0]:.2f} s (moves of 0.3 s on the vault)")


def test_vospace_refuses_a_stranger_permanently(cadc, tmp_path):
    stranger = cadc.issue_proxy(tmp_path / "stranger.pem", user="mallory")
    destination = VOSpace("vos:jdoe/private", auth=_auth(certificate=stranger))
    with pytest.raises(PermissionDenied, match="vos:jdoe/private.*403"):
        destination.put(_catalogue(tmp_path), f"{ID}.cat")


def test_a_destination_that_is_a_file_is_refused(cadc, tmp_path):
    VOSpace("vos:jdoe/plain").put(_catalogue(tmp_path), "afile")
    with pytest.raises(PermanentError, match="vos:jdoe/plain/afile is a file"):
        VOSpace("vos:jdoe/plain/afile").put(_catalogue(tmp_path), f"{ID}.cat")


# -- credentials --------------------------------------------------------------------------
def test_a_proxy_that_expires_before_the_work_fails_early_with_the_renewal_command(cadc, tmp_path):
    short = cadc.issue_proxy(tmp_path / "short.pem", days=0.5)
    boundaries = [CadcArchive("cadc:CFHT", auth=_auth(certificate=short)), VOSpace("vos:jdoe/x", auth=_auth(certificate=short))]
    require_lifetime(boundaries, timedelta(hours=6))
    with pytest.raises(PermissionDenied, match="cadc:CFHT.*h left.*48.0 h.*cadc-get-cert -n"):
        require_lifetime(boundaries, timedelta(hours=48))


def test_netrc_renews_a_proxy_that_runs_short(cadc, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    proxy = cadc.issue_proxy(tmp_path / "ssl" / "proxy.pem", days=1)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {cadc.user} password {cadc.password}\n")
    netrc.chmod(0o600)
    auth = _auth(method="netrc", certificate=proxy, netrc=netrc)
    archive = CadcArchive("cadc:CFHT", auth=auth)
    assert refresh([archive, VOSpace("vos:jdoe/x", auth=auth)]) == ["cadc:CFHT"]  # once, not twice
    assert timedelta(days=9.9) < proxy_lifetime(proxy) <= timedelta(days=10)
    assert proxy.stat().st_mode & 0o777 == 0o600
    assert refresh([archive]) == []  # fresh enough now
    assert cadc.password not in caplog.text

    proxy.unlink()
    netrc.write_text(f"machine 127.0.0.1 login {cadc.user} password wrong\n")
    with pytest.raises(PermissionDenied, match="renewing the proxy certificate.*401"):
        refresh([archive])
    assert not proxy.exists()


def test_the_token_never_reaches_the_logs(cadc, small_exposure, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cadc.add_exposure(NAME, small_exposure.read_bytes())
    auth = _auth(method="token")
    CadcArchive("cadc:CFHT", auth=auth).fetch(ID, tmp_path / "in")
    VOSpace("vos:jdoe/tokened", auth=auth).put(_catalogue(tmp_path), f"{ID}.cat")
    with pytest.raises(PermissionDenied) as refused:
        CadcArchive("cadc:CFHT", auth=_auth(method="token", token_file=tmp_path / "absent")).checksum(ID)
    assert cadc.token not in caplog.text and cadc.token not in str(refused.value)
    assert "absent" in str(refused.value)


# -- the whole path -----------------------------------------------------------------------
def test_a_deployment_run_reads_cadc_and_writes_vospace_without_leaking_the_credential(local_site, cadc, small_exposure):
    import json
    import subprocess

    from .conftest import BIN, CADC, everything_prefect_holds

    ids = ["1056213p", "1056215p"]
    for observation_id in ids:
        cadc.add_exposure(f"{observation_id}.fits.fz", small_exposure.read_bytes())
    command = [
        str(BIN / "prefect"), "deployment", "run", "catalogue/batch",
        "--param", f"ids={json.dumps(ids)}", "--param", "archive=cadc:CFHT", "--param", "destination=vos:jdoe/e2e",
        "--watch", "--watch-timeout", "300",
    ]
    done = subprocess.run(command, env=local_site["env"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    destination = VOSpace("vos:jdoe/e2e")
    for observation_id in ids:
        catalogue = destination.read(f"{observation_id}.cat").decode()
        assert catalogue.startswith("#   1 NUMBER") and len(catalogue.splitlines()) > 20
        record = json.loads(destination.read(f"{observation_id}.provenance.json"))
        assert record["archive"] == "cadc:CFHT" and record["input_md5"]
    assert not [path for path in cadc.visible("jdoe/e2e/") if path.endswith(".part")]

    key_lines = [line for line in CADC["certificate"].read_text().splitlines() if not line.startswith("-----")]
    secrets = [cadc.token, cadc.password, *key_lines[1:4]]
    text = "\n".join([everything_prefect_holds(), done.stdout, done.stderr])
    assert "vos:jdoe/e2e" in text  # the search does see what the runs wrote
    assert not [secret for secret in secrets if secret in text]


def test_the_nightly_flow_renews_a_short_proxy_from_netrc_before_it_looks(cadc, tmp_path, monkeypatch, prefect_server):
    from canfar_catalogue.flows.nightly import catalogue_nightly

    from .conftest import CADC

    proxy = cadc.issue_proxy(tmp_path / "proxy.pem", days=1)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {cadc.user} password {cadc.password}\n")
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[cadc]\nauth = "netrc"\ncertificate = "{proxy}"\nnetrc = "{netrc}"\nca_bundle = "{CADC["ca_bundle"]}"\n'
    )
    monkeypatch.setenv("CANFAR_CATALOGUE_SETTINGS", str(settings))
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    assert catalogue_nightly(destination="vos:jdoe/nightly", archive="cadc:CFHT", since=tomorrow) == []
    assert proxy_lifetime(proxy) > timedelta(days=9.9)
    assert any("argus/sync" in path for _, path, _ in cadc.requests)  # and then it asked TAP
