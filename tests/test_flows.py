"""The flows against a real Prefect server: in-process runs and deployment runs on a process worker."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
)
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, TaskRunFilter, TaskRunFilterName
from prefect import flow

from canfar_catalogue.boundaries import archive as archives
from canfar_catalogue.boundaries import storage
from canfar_catalogue.boundaries.errors import PermissionDenied, TransientError
from canfar_catalogue.boundaries.storage import LocalStorage
from canfar_catalogue.flows.batch import BatchFailed, catalogue_batch
from canfar_catalogue.flows.exposure import TURNS, catalogue_exposure
from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.tasks import download as download_module
from canfar_catalogue.worker.process_pool import with_engine_command

from .conftest import BIN

pytestmark = pytest.mark.usefixtures("prefect_server")

EXPOSURE_DEPLOYMENT = "catalogue-exposure/exposure"


def _exposure_runs(name_prefix: str | None = None) -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["catalogue-exposure"])))
    return [r for r in runs if name_prefix is None or r.name.startswith(name_prefix)]


def _task_runs(flow_run_id, name: str) -> list:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
        )
    return runs


def _positions(catalogue: Path) -> set[tuple[str, str]]:
    rows = [line.split() for line in catalogue.read_text().splitlines() if not line.startswith("#")]
    return {(row[2], row[3]) for row in rows}


@pytest.mark.fault('hostile input', 'ID ../x', 'refused before any run, naming the bad entry; nothing started')
@pytest.mark.fault('hostile input', 'ID a;rm -rf ~', 'refused before any run, naming the bad entry; nothing started')
@pytest.mark.fault('hostile input', 'ID with a space', 'refused before any run, naming the bad entry; nothing started')
@pytest.mark.fault('hostile input', 'unicode look-alike digits and letters', 'refused before any run, naming the bad entry; nothing started')
@pytest.mark.fault('hostile input', 'a 10 kB string', 'refused before any run, naming the bad entry; nothing started')
@pytest.mark.fault('hostile input', '100,000 IDs', "refused (over max_ids, or the server's 512 kB parameter limit); nothing started")
def test_hostile_ids_are_rejected_before_any_run(local_site, tmp_path, record_property):
    record_property("did", 'every one refused before a flow run; no exposure run, no output folder')
    before = len(_exposure_runs())
    destination = f"file://{tmp_path}/out"
    for bad in ["../x", "a;rm -rf ~", "1056213 p", "１０５６２１３p", "1056213Р", "x" * 10_000]:
        with pytest.raises(ValueError, match="no exposure was started"):
            catalogue_batch(ids=["1056213p", bad], destination=destination, archive=local_site["archive"])
    with pytest.raises(Exception, match="ids.1: Input should be a valid string"):  # Prefect's own validation
        catalogue_batch(ids=["1056213p", 1056213], destination=destination, archive=local_site["archive"])
    with pytest.raises(ValueError, match="at most 10000"):
        catalogue_batch(ids=[f"{n:07d}p" for n in range(10_001)], destination=destination, archive=local_site["archive"])
    with pytest.raises(ValueError, match="max_in_flight must be at least 1, not 0"):
        catalogue_batch(ids=["1056213p"], destination=destination, archive=local_site["archive"], max_in_flight=0)
    # 100,000 IDs do not even make a flow run: the Prefect server refuses parameters over 512 kB.
    with pytest.raises(Exception, match="less than 524,288 bytes"):
        catalogue_batch(ids=[f"{n:07d}p" for n in range(100_000)], destination=destination, archive=local_site["archive"])
    assert len(_exposure_runs()) == before
    assert not Path(tmp_path, "out").exists()


def test_a_run_sweeps_away_scratch_left_by_runs_killed_long_ago(local_site, tmp_path):
    """kill -9 leaves a run's scratch directory (its downloaded exposure) behind; a later run removes
    directories untouched for stale_scratch_hours, and only those."""
    import uuid

    scratch = tmp_path / "scratch"
    killed, recent, users = (scratch / str(uuid.uuid4()), scratch / str(uuid.uuid4()), scratch / "my-old-notes")
    for directory in (killed, recent, users):
        directory.mkdir(parents=True)
        (directory / "1056213p.fits.fz").write_bytes(b"x" * 1000)
    long_ago = time.time() - 13 * 3600
    for path in (killed / "1056213p.fits.fz", killed, users / "1056213p.fits.fz", users):
        os.utime(path, (long_ago, long_ago))
    catalogue_exposure("1056215p", local_site["archive"], f"file://{tmp_path}/out", scratch=str(scratch))
    assert not killed.exists() and (recent / "1056213p.fits.fz").exists()
    assert (users / "1056213p.fits.fz").exists()  # not named as a run names its directory: not ours to remove
    assert (tmp_path / "out" / "1056215p.cat").exists()
    # beside them, the empty file by which the runs on this machine take turns at its cores
    assert sorted(p.name for p in scratch.iterdir()) == sorted([recent.name, users.name, TURNS])
    assert (scratch / TURNS).stat().st_size == 0


def test_a_weight_or_flag_pattern_that_cannot_name_the_maps_stops_the_batch_before_anything_starts(local_site, tmp_path):
    before = len(_exposure_runs())
    with pytest.raises(ValueError, match=r"no exposure was started: weight_pattern: .*must hold \{id\} once"):
        catalogue_batch(ids=["1056213p"], destination=f"file://{tmp_path}/out", archive=local_site["archive"],
                        overrides=["-WEIGHT_TYPE", "MAP_WEIGHT"], weight_pattern="weights.fits")
    (tmp_path / "flags.param").write_text("NUMBER\nIMAFLAGS_ISO\n")
    with pytest.raises(ValueError, match=r"no exposure was started: flag_pattern: .*other than the exposure's own"):
        catalogue_batch(ids=["1056213p"], destination=f"file://{tmp_path}/out", archive=local_site["archive"],
                        overrides=["-PARAMETERS_NAME", str(tmp_path / "flags.param")], flag_pattern="{id}.fits.fz")
    assert len(_exposure_runs()) == before and not (tmp_path / "out").exists()


def test_batch_catalogues_exposures_then_skips_them(local_site, tmp_path):
    destination = f"file://{tmp_path}/vospace"
    rows = catalogue_batch(
        ids=["1056213p", "1056215p"], destination=destination, archive=local_site["archive"],
        exposure_deployment=EXPOSURE_DEPLOYMENT,
    )
    assert [r["status"] for r in rows] == ["completed", "completed"]
    config = load_config()
    for observation_id in ("1056213p", "1056215p"):
        stored = tmp_path / "vospace" / f"{observation_id}.cat"
        direct = run_exposure(local_site["archive_path"] / f"{observation_id}.fits.fz", config, tmp_path / "direct.cat")
        assert _positions(stored) == _positions(direct.catalogue)
        record = json.loads((tmp_path / "vospace" / f"{observation_id}.provenance.json").read_text())
        assert record["sources"] == direct.count and record["config_hash"] == config.fingerprint()
    assert sorted(p.name for p in (tmp_path / "vospace").iterdir()) == [
        "1056213p.cat", "1056213p.provenance.json", "1056215p.cat", "1056215p.provenance.json",
    ]
    runs_before = len(_exposure_runs())
    created = (tmp_path / "vospace" / "1056213p.cat").stat().st_mtime_ns

    again = catalogue_batch(
        ids=["1056213p", "1056215p"], destination=destination, archive=local_site["archive"],
        exposure_deployment=EXPOSURE_DEPLOYMENT,
    )
    assert [r["status"] for r in again] == ["skipped", "skipped"]
    assert len(_exposure_runs()) == runs_before  # nothing dispatched, nothing downloaded
    assert (tmp_path / "vospace" / "1056213p.cat").stat().st_mtime_ns == created
    # the quality of skipped exposures comes from their records, and the summary shows it
    for first, second in zip(rows, again):
        assert first["fwhm"] > 0 and (second["fwhm"], second["limiting_magnitude"]) == (first["fwhm"], first["limiting_magnitude"])
    with get_client(sync_client=True) as client:
        summary = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=["catalogue-batch-summary"]))
        )[0]
    assert "Quality across the batch" in summary.data and "](data:image/png;base64," in summary.data
    assert all(f"| {r['id']} | skipped | {r['fwhm']:.2f} |" in summary.data for r in again)


def test_the_first_exposures_start_while_the_rest_are_looked_up(local_site, tmp_path):
    """IDs are planned two first, then in doubling steps: the first runs exist before the next look-up."""
    ids = ["1056213p", "1056215p", "1056216p", "1056217p"]
    state = catalogue_batch(ids=ids, destination=f"file://{tmp_path}/vospace", archive=local_site["archive"],
                            exposure_deployment=EXPOSURE_DEPLOYMENT, return_state=True)
    rows = state.result()
    assert [r["status"] for r in rows] == ["completed"] * 4 and [r["id"] for r in rows] == ids
    plans = sorted(_task_runs(state.state_details.flow_run_id, "plan"), key=lambda t: t.start_time)
    assert len(plans) == 2  # two IDs, then the other two
    with get_client(sync_client=True) as client:
        children = sorted((client.read_flow_run(r["flow_run"]) for r in rows), key=lambda r: r.created)
    assert [r.name for r in children[:2]] == ids[:2]
    assert children[1].created < plans[1].start_time


def test_missing_and_corrupt_exposures_fail_clearly_and_the_rest_finish(local_site, tmp_path):
    destination = f"file://{tmp_path}/vospace"
    with pytest.raises(BatchFailed) as failure:
        catalogue_batch(
            ids=["1056216p", "1056200p", "1056299p"], destination=destination, archive=local_site["archive"],
            exposure_deployment=EXPOSURE_DEPLOYMENT,
        )
    message = str(failure.value)
    assert "2 of 3" in message
    assert "1056200p" in message and "not in the archive" in message
    assert "1056299p" in message
    assert sorted(p.name for p in (tmp_path / "vospace").iterdir()) == ["1056216p.cat", "1056216p.provenance.json"]
    # A corrupt file is a permanent failure: it ran once, and was not started again.
    assert len([r for r in _exposure_runs("1056299p")]) == 1


def _register(scheme: str, factory) -> None:
    storage.register(scheme, factory)


class FlakyStorage(LocalStorage):
    """A local destination whose first catalogue upload fails, as a 503 would."""

    failures = 1

    def __init__(self, uri: str):
        super().__init__("file://" + urlparse(uri).path)

    def put(self, local, name):
        if name.endswith(".cat") and FlakyStorage.failures > 0:
            FlakyStorage.failures -= 1
            raise TransientError("503 Service Unavailable (injected)")
        return super().put(local, name)


class ForbiddenStorage(LocalStorage):
    def __init__(self, uri: str):
        super().__init__("file://" + urlparse(uri).path)

    def put(self, local, name):
        raise PermissionDenied(f"403 Forbidden writing {name} (injected); check the destination's permissions")


def test_a_transient_upload_failure_is_retried_and_succeeds(local_site, tmp_path):
    _register("flaky", FlakyStorage)
    FlakyStorage.failures = 1
    state = catalogue_exposure("1056216p", local_site["archive"], f"flaky://{tmp_path}/out", return_state=True)
    assert state.is_completed()
    assert (tmp_path / "out" / "1056216p.cat").exists()
    [upload] = _task_runs(state.state_details.flow_run_id, "upload")
    assert upload.run_count == 2


def test_a_permanent_upload_failure_fails_at_once_and_keeps_the_local_copy(local_site, tmp_path):
    _register("forbidden", ForbiddenStorage)
    scratch = tmp_path / "scratch"
    state = catalogue_exposure(
        "1056216p", local_site["archive"], f"forbidden://{tmp_path}/out", scratch=str(scratch), return_state=True
    )
    assert state.is_failed()
    assert "PermanentFailure" in state.message and "403" in state.message
    [upload] = _task_runs(state.state_details.flow_run_id, "upload")
    assert upload.run_count == 1
    kept = list(scratch.glob("*/1056216p.cat"))
    assert len(kept) == 1 and not list(scratch.glob("*/*.fits.fz"))
    assert not (tmp_path / "out").exists()


def test_an_unwritable_destination_is_a_permanent_failure(local_site, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    state = catalogue_exposure("1056216p", local_site["archive"], f"file://{tmp_path}/a-file/out", return_state=True)
    assert state.is_failed() and "PermanentFailure" in state.message
    [upload] = _task_runs(state.state_details.flow_run_id, "upload")
    assert upload.run_count == 1


class CountingArchive:
    """A shared archive whose downloads take a while, counting how many run at once."""

    shared = True
    lock = threading.Lock()
    active = 0
    peak = 0

    def __init__(self, uri: str):
        self.uri = uri
        self.inner = archives.LocalArchive("file://" + urlparse(uri).path)

    def checksum(self, observation_id):
        return self.inner.checksum(observation_id)

    def fetch(self, observation_id, directory):
        with CountingArchive.lock:
            CountingArchive.active += 1
            CountingArchive.peak = max(CountingArchive.peak, CountingArchive.active)
        try:
            time.sleep(0.6)
            return self.inner.fetch(observation_id, directory)
        finally:
            with CountingArchive.lock:
                CountingArchive.active -= 1


def test_a_local_download_reads_the_file_once(local_site, tmp_path, monkeypatch):
    """A folder's md5 is its file's own: the file is linked (on one file system) and hashed as it is
    read, and the checksum asked for afterwards is remembered, not computed again.  A file that
    changes meanwhile is refused.  Where it cannot be linked, it is copied."""
    import hashlib

    from canfar_catalogue.boundaries import checksums

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(checksums, "_seen", {})
    monkeypatch.setattr(checksums, "RACY_NS", 0)  # the session's archive may have been written just now
    source = local_site["archive_path"] / "1056213p.fits.fz"
    hashed = []
    monkeypatch.setattr(checksums, "hash_file", lambda path: hashed.append(path) or "not this")
    archive = archives.LocalArchive(local_site["archive"])
    fetched = archive.fetch("1056213p", tmp_path / "scratch")
    assert fetched.md5 == hashlib.md5(source.read_bytes()).hexdigest()
    assert (tmp_path / "scratch" / source.name).read_bytes() == source.read_bytes()
    assert (tmp_path / "scratch" / source.name).samefile(source)  # a link: nothing written
    assert archive.checksum("1056213p") == fetched.md5 and hashed == []

    def cross_device(*args):
        raise OSError(18, "Invalid cross-device link")

    with monkeypatch.context() as patched:
        patched.setattr(archives.os, "link", cross_device)
        copied = archive.fetch("1056213p", tmp_path / "elsewhere")
    assert copied.md5 == fetched.md5 and copied.path.read_bytes() == source.read_bytes()
    assert not copied.path.samefile(source) and [p.name for p in copied.path.parent.iterdir()] == [source.name]

    checksums._seen.clear()
    before = checksums.identity(source)
    changed = iter([before, before._replace(mtime_ns=before.mtime_ns + 1)])  # before, then after the copy
    monkeypatch.setattr(checksums, "identity", lambda path: next(changed))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "another cache"))
    with pytest.raises(TransientError, match="changed while it was copied"):
        archive.fetch("1056213p", tmp_path / "again")
    assert not list((tmp_path / "again").iterdir())


def test_a_local_archive_files_md5_is_remembered_across_processes_until_the_file_changes(tmp_path, monkeypatch):
    """What the batch hashed when it planned, the exposure's run (another process) links unread; a file
    written since, or replaced, is hashed again; an unwritable cache only costs the hashing."""
    import hashlib

    from canfar_catalogue.boundaries import checksums

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "archive"
    folder.mkdir()
    source = folder / "1056213p.fits.fz"
    source.write_bytes(b"first night" * 1000)
    os.utime(source, (1_700_000_000, 1_700_000_000))  # written long ago
    archive = archives.LocalArchive(f"file://{folder}")
    hashed = []
    real_hash = checksums.hash_file
    monkeypatch.setattr(checksums, "hash_file", lambda path: hashed.append(path) or real_hash(path))
    monkeypatch.setattr(checksums, "_seen", {})
    planned = archive.checksum("1056213p")  # the batch
    assert planned == hashlib.md5(source.read_bytes()).hexdigest() and hashed == [source]

    monkeypatch.setattr(checksums, "_seen", {})  # the exposure's run: a process of its own
    reads = []
    real_open = open
    monkeypatch.setattr(archives, "open", lambda path, *a: reads.append(path) or real_open(path, *a), raising=False)
    fetched = archive.fetch("1056213p", tmp_path / "run")
    assert fetched.md5 == planned and fetched.size == source.stat().st_size and reads == []
    assert fetched.path.read_bytes() == source.read_bytes()

    source.write_bytes(b"second look" * 1000)  # written in place: a new modification time
    monkeypatch.setattr(checksums, "_seen", {})
    assert archive.checksum("1056213p") == hashlib.md5(b"second look" * 1000).hexdigest()
    assert hashed == [source, source]  # just written: hashed again, not remembered (a racy time)
    os.utime(source, (1_700_000_100, 1_700_000_100))
    monkeypatch.setattr(checksums, "_seen", {})
    refetched = archive.fetch("1056213p", tmp_path / "rerun")
    assert refetched.md5 == hashlib.md5(b"second look" * 1000).hexdigest() and reads == [source]
    monkeypatch.setattr(checksums, "_seen", {})
    assert archive.checksum("1056213p") == refetched.md5 and len(hashed) == 2  # remembered by the fetch

    replacement = folder / "new.tmp"
    replacement.write_bytes(b"reprocessed" * 1000)
    os.utime(replacement, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    replacement.replace(source)  # same size and time, another file
    monkeypatch.setattr(checksums, "_seen", {})
    assert archive.checksum("1056213p") == hashlib.md5(b"reprocessed" * 1000).hexdigest()

    unwritable = tmp_path / "not a folder"
    unwritable.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(unwritable))  # a cache that cannot be written: hashed, and right
    monkeypatch.setattr(checksums, "_seen", {})
    assert archive.checksum("1056213p") == hashlib.md5(b"reprocessed" * 1000).hexdigest()
    monkeypatch.setattr(checksums, "_seen", {})
    assert archive.checksum("1056213p") == hashlib.md5(b"reprocessed" * 1000).hexdigest() and len(hashed) == 5


class NoChecksumArchive(archives.LocalArchive):
    """A folder that refuses to be asked for an md5: the caller is meant to have it."""

    def __init__(self, uri: str):
        super().__init__("file://" + urlparse(uri).path)

    def checksum(self, observation_id):
        raise AssertionError("the archive was asked for an md5 the batch had already given")


def test_the_batchs_md5_spares_the_archive_a_second_look_up(local_site, tmp_path):
    import hashlib

    archives.register("nochecksum", NoChecksumArchive)
    uri = "nochecksum://" + str(local_site["archive_path"])
    true_md5 = hashlib.md5((local_site["archive_path"] / "1056216p.fits.fz").read_bytes()).hexdigest()
    # what the batch passes: the exposure's md5, and those of the files beside it ("": no external header)
    state = catalogue_exposure("1056216p", uri, f"file://{tmp_path}/out", input_md5=true_md5,
                               companion_md5={"header": ""}, return_state=True)
    assert state.is_completed(), state.message
    assert _task_runs(state.state_details.flow_run_id, "archive checksum") == []
    record = json.loads((tmp_path / "out" / "1056216p.provenance.json").read_text())
    assert record["input_md5"] == true_md5

    # The file changed after the batch looked: catalogued as it is now, its true md5 recorded.
    state = catalogue_exposure("1056216p", uri, f"file://{tmp_path}/again", input_md5="0" * 32,
                               companion_md5={"header": ""}, return_state=True)
    assert state.is_completed(), state.message
    assert json.loads((tmp_path / "again" / "1056216p.provenance.json").read_text())["input_md5"] == true_md5


def test_downloads_never_exceed_the_global_concurrency_limit(local_site, tmp_path, monkeypatch):
    archives.register("counting", CountingArchive)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="test-downloads", limit=2))
    monkeypatch.setitem(download_module.SETTINGS, "concurrency_limit", "test-downloads")
    uri = "counting://" + str(local_site["archive_path"])

    @flow
    def fetch_many():
        futures = [
            download_module.download.submit(observation_id, uri, tmp_path / str(i))
            for i, observation_id in enumerate(["1056213p", "1056215p", "1056216p", "1056217p"] * 2)
        ]
        return [f.result() for f in futures]

    fetched = fetch_many()
    assert len(fetched) == 8
    assert CountingArchive.peak == 2

    monkeypatch.setitem(download_module.SETTINGS, "concurrency_limit", "no-such-limit")

    @flow
    def without_limit():
        return download_module.download(("1056213p"), uri, tmp_path / "x")

    with pytest.raises(Exception, match="no-such-limit"):
        without_limit()


def test_a_local_folder_takes_no_download_slot(local_site, tmp_path, monkeypatch):
    """Only a shared archive (CADC) is bounded: a folder's download never asks for the limit."""
    monkeypatch.setitem(download_module.SETTINGS, "concurrency_limit", "no-such-limit")

    @flow
    def fetch_from_folder():
        return download_module.download("1056213p", local_site["archive"], tmp_path / "x")

    assert fetch_from_folder().path.stat().st_size > 0


def test_prefect_deployment_run_end_to_end(local_site, tmp_path):
    destination = f"file://{tmp_path}/vospace"
    command = [
        str(BIN / "prefect"), "deployment", "run", "catalogue/batch",
        "--param", 'ids=["1056217p","1056213p"]', "--param", f"destination={destination}",
        "--watch", "--watch-timeout", "300",
    ]
    done = subprocess.run(command, env=local_site["env"], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Completed" in done.stdout
    for observation_id in ("1056217p", "1056213p"):
        assert (tmp_path / "vospace" / f"{observation_id}.cat").stat().st_size > 1000
    with get_client(sync_client=True) as client:
        table = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=["exposure-1056217p"]))
        )
    assert table and json.loads(table[0].data)[0]["ccd"] == "ccd00"
    # deploy.sh gave the process pool the pilot's client as its command: no workspace supervisor, no new imports
    with get_client(sync_client=True) as client:
        template = client.read_work_pool("test-pool").base_job_template
    assert template["variables"]["properties"]["command"]["default"] == f"{BIN / 'python'} -m canfar_catalogue.worker.pilot"


def test_a_process_pool_keeps_a_command_it_was_given_and_replaces_the_one_deploy_sh_set_before():
    template = {"variables": {"properties": {"command": {"default": None, "title": "Command"}}}}
    given = with_engine_command(template, "/venv/bin/python -m canfar_catalogue.worker.pilot")
    assert given["variables"]["properties"]["command"] == {"default": "/venv/bin/python -m canfar_catalogue.worker.pilot",
                                                           "title": "Command"}
    assert template["variables"]["properties"]["command"]["default"] is None  # not changed in place
    earlier = ("/venv/bin/python -m prefect.engine",)
    assert with_engine_command(given, "/venv/bin/python -m canfar_catalogue.worker.pilot", earlier) is None
    theirs = with_engine_command(template, "/opt/run-my-engine")
    assert with_engine_command(theirs, "/venv/bin/python -m canfar_catalogue.worker.pilot", earlier) is None
    before = with_engine_command(template, earlier[0])
    upgraded = with_engine_command(before, "/venv/bin/python -m canfar_catalogue.worker.pilot", earlier)
    assert upgraded["variables"]["properties"]["command"]["default"] == "/venv/bin/python -m canfar_catalogue.worker.pilot"


#: A ShapePipe-like configuration: FITS_LDAC, weight and flag maps, DETECT_THRESH 1.5, BACK_SIZE 64,
#: windowed positions and the stamps PSFEx reads.
SHAPEPIPE_SEX = """\
CATALOG_TYPE     FITS_LDAC
PARAMETERS_NAME  shapepipe.param
DETECT_THRESH    1.5
ANALYSIS_THRESH  1.5
BACK_SIZE        64
WEIGHT_TYPE      MAP_WEIGHT
WEIGHT_GAIN      Y
PHOT_APERTURES   5,10
"""
SHAPEPIPE_PARAM = """NUMBER EXT_NUMBER X_WORLD Y_WORLD X_IMAGE Y_IMAGE XWIN_IMAGE YWIN_IMAGE ERRAWIN_IMAGE ERRBWIN_IMAGE
ERRTHETAWIN_IMAGE MAG_AUTO MAGERR_AUTO FLUX_AUTO FLUXERR_AUTO FLUX_APER(2) FLUXERR_APER(2) FLUX_RADIUS FWHM_IMAGE
FLAGS IMAFLAGS_ISO NIMAFLAGS_ISO SNR_WIN ELONGATION VIGNET(51,51)""".split()


def test_a_shapepipe_like_configuration_runs_end_to_end_with_the_archives_weight_and_flag_maps(
    local_site, tmp_path
):
    """Through ``prefect deployment run``: each exposure's weight and flag maps come from the archive
    beside it, their md5s join the record, and a changed weight map (alone) makes the exposure
    run again while the other is skipped."""
    from canfar_catalogue.boundaries.checksums import md5_of
    from canfar_catalogue.boundaries.provenance import Provenance
    from canfar_catalogue.science.synthetic import ExposureSpec, write_weights

    (tmp_path / "shapepipe.param").write_text("\n".join(SHAPEPIPE_PARAM) + "\n")
    sex = tmp_path / "shapepipe.sex"
    from canfar_catalogue import config as packaged

    sex.write_text(SHAPEPIPE_SEX.replace("shapepipe.param", str(tmp_path / "shapepipe.param"))
                   + f"FILTER_NAME      {packaged.path('default.conv')}\n")
    destination = tmp_path / "vospace"
    archive = local_site["archive_path"]

    def batch() -> str:
        command = [
            str(BIN / "prefect"), "deployment", "run", "catalogue/batch",
            "--param", 'ids=["1056213p","1056215p"]', "--param", f"destination=file://{destination}",
            "--param", f"sex_file={sex}", "--watch", "--watch-timeout", "300",
        ]
        done = subprocess.run(command, env=local_site["env"], capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    batch()
    records = {}
    for observation_id in ("1056213p", "1056215p"):
        record = Provenance.from_json((destination / f"{observation_id}.provenance.json").read_text())
        assert record.companion_md5 == {"weight": md5_of(archive / f"{observation_id}.weight.fits.fz"),
                                        "flag": md5_of(archive / f"{observation_id}.flag.fits.fz")}
        records[observation_id] = record
    # the stored catalogue is the one the same configuration makes with that weight map by hand
    config = load_config(sex, overrides=["-WEIGHT_IMAGE", str(archive / "1056213p.weight.fits.fz"),
                                         "-FLAG_IMAGE", str(archive / "1056213p.flag.fits.fz")])
    by_hand = run_exposure(archive / "1056213p.fits.fz", config, tmp_path / "by-hand.ldac.fits", workers=1)
    from astropy.io import fits

    with fits.open(destination / "1056213p.ldac.fits") as stored, fits.open(by_hand.catalogue) as mine:
        assert [h.name for h in stored] == ["PRIMARY"] + ["LDAC_IMHEAD", "LDAC_OBJECTS"] * 2
        for ours, theirs in zip(stored[2::2], mine[2::2]):
            assert ours.data["VIGNET"].shape[1:] == (51, 51)
            assert np.array_equal(ours.data["FLUXERR_AUTO"], theirs.data["FLUXERR_AUTO"])
            assert np.array_equal(ours.data["XWIN_IMAGE"], theirs.data["XWIN_IMAGE"])
            assert np.array_equal(ours.data["IMAFLAGS_ISO"], theirs.data["IMAFLAGS_ISO"])
        assert sum(int((h.data["IMAFLAGS_ISO"] > 0).sum()) for h in stored[2::2]) > 0  # the dead pixels flag some
    # a new weight map for one exposure: that one runs again, the other is skipped
    write_weights(archive / "1056213p.weight.fits.fz", ExposureSpec.small(seed=99))
    try:
        batch()
        again = Provenance.from_json((destination / "1056213p.provenance.json").read_text())
        same = Provenance.from_json((destination / "1056215p.provenance.json").read_text())
        assert again.flow_run_id != records["1056213p"].flow_run_id
        assert again.companion_md5["weight"] == md5_of(archive / "1056213p.weight.fits.fz") \
            != records["1056213p"].companion_md5["weight"]
        assert same.flow_run_id == records["1056215p"].flow_run_id
    finally:
        write_weights(archive / "1056213p.weight.fits.fz", ExposureSpec.small(seed=1))


@pytest.fixture
def two_attempts(local_site, tmp_path):
    """Attempts 1 and 2 of one exposure's work, both Pending (no worker takes them), and their parameters.

    Pending runs hold places in the exposures' queue, so whatever is left Pending is cancelled afterwards.
    """
    import uuid

    from prefect.states import Cancelled, Pending

    work = f"catalogue:1056213p:{uuid.uuid4().hex}"
    parameters = {"observation_id": "1056213p", "archive": local_site["archive"],
                  "destination": f"file://{tmp_path / 'out'}"}
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(EXPOSURE_DEPLOYMENT)
        runs = [client.create_flow_run_from_deployment(deployment.id, parameters=parameters, state=Pending(),
                                                       idempotency_key=f"{work}:{n}", name="1056213p")
                for n in (1, 2)]
    yield (*runs, parameters)
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # run_flow leaves its runs' last log lines queued: send them while the server is up
    with get_client(sync_client=True) as client:
        for run in runs:
            if not client.read_flow_run(run.id).state.is_final():
                client.set_flow_run_state(run.id, Cancelled(message="left by a test"), force=True)


def test_a_run_that_a_batch_replaced_stops_when_it_starts_late(two_attempts, tmp_path):
    """A run left Pending while the server was down can run once it is back, after another batch started
    a later attempt of its work: the latest attempt wins, and the earlier one ends Cancelled, storing nothing."""
    from prefect.flow_engine import run_flow

    from canfar_catalogue.flows import attempts

    destination = tmp_path / "out"
    early, late, parameters = two_attempts
    state = run_flow(catalogue_exposure, flow_run=early, parameters=parameters, return_type="state")
    assert state.is_cancelled() and attempts.is_superseded(state) and str(late.id) in state.message
    assert not destination.exists()
    assert attempts.later_attempt(attempts.read_run(str(late.id)), "1056213p") is None  # the latest carries on


def test_a_run_that_replaced_one_that_ran_after_all_stores_nothing_and_does_not_complete(local_site, tmp_path):
    """The other way round: a batch, reading a stale Pending state, replaced attempt 1, which ran and
    stored the catalogue before attempt 2 was even created.  Attempt 2 ends Cancelled as not needed:
    one completed run, one store."""
    import json
    import uuid

    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from canfar_catalogue.flows import attempts

    work = f"catalogue:1056213p:{uuid.uuid4().hex}"
    parameters = {"observation_id": "1056213p", "archive": local_site["archive"],
                  "destination": f"file://{tmp_path / 'out'}"}

    def attempt(n: int):
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(EXPOSURE_DEPLOYMENT)
            return client.create_flow_run_from_deployment(deployment.id, parameters=parameters, state=Pending(),
                                                          idempotency_key=f"{work}:{n}", name="1056213p")

    early = attempt(1)
    first = run_flow(catalogue_exposure, flow_run=early, parameters=parameters, return_type="state")
    assert first.is_completed(), first.message
    record = (tmp_path / "out" / "1056213p.provenance.json").read_text()
    assert json.loads(record)["flow_run_id"] == str(early.id)
    late = attempt(2)  # what the batch started, having judged attempt 1 lost on a stale read
    second = run_flow(catalogue_exposure, flow_run=late, parameters={**parameters, "replaces": str(early.id)},
                      return_type="state")
    assert attempts.is_redundant(second) and str(early.id) in second.message
    assert (tmp_path / "out" / "1056213p.provenance.json").read_text() == record  # not stored again


def test_a_batch_takes_a_superseded_runs_catalogue_only_from_a_later_attempt():
    import uuid

    from prefect.client.schemas.objects import FlowRun

    from canfar_catalogue.flows import attempts

    runs = [FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="1056213p", idempotency_key=f"catalogue:w:{n}")
            for n in (1, 2, 3)]
    first, second, third = (str(run.id) for run in runs)
    assert attempts.stored_by_later(runs, second, third)
    assert not attempts.stored_by_later(runs, second, first)  # an earlier attempt's (an earlier batch's) catalogue
    assert not attempts.stored_by_later(runs, second, str(uuid.uuid4()))  # a run of other work
    assert attempts.number(runs[2]) == 3 and attempts.number(FlowRun(flow_id=uuid.uuid4(), name="x")) == 0


def test_a_batch_follows_a_run_of_its_work_that_completed_after_it_looked(local_site, tmp_path, monkeypatch):
    """Two batches of the same exposure: this one looks the exposure up while the other's run of it is
    measuring, and that run completes before this batch starts the exposure.  The batch follows that run;
    a second run would only find the catalogue and complete too: two completed runs of one exposure."""
    from prefect.flow_engine import run_flow
    from prefect.states import Pending

    from canfar_catalogue.flows import batch as batch_module

    destination = f"file://{tmp_path / 'out'}"
    real_runs_of = batch_module.attempts.runs_of
    other: list = []

    def runs_of(deployment_id, observation_id, work, *more):
        if not other:  # between this batch's look-up and its start: the other batch's run completes
            with get_client(sync_client=True) as client:
                other.append(client.create_flow_run_from_deployment(
                    deployment_id, state=Pending(), idempotency_key=f"{work}:1", name=observation_id,
                    parameters={"observation_id": observation_id, "archive": local_site["archive"],
                                "destination": destination}))
            state = run_flow(catalogue_exposure, flow_run=other[0], parameters=other[0].parameters, return_type="state")
            assert state.is_completed(), state.message
        return real_runs_of(deployment_id, observation_id, work, *more)

    monkeypatch.setattr(batch_module.attempts, "runs_of", runs_of)
    rows = catalogue_batch(ids=["1056216p"], destination=destination, archive=local_site["archive"])
    assert rows[0]["status"] == "completed" and rows[0]["runs"] == 0
    assert rows[0]["flow_run"] == str(other[0].id) and rows[0]["run_origin"] == "re-attached"
    work = other[0].idempotency_key.rsplit(":", 1)[0]
    assert [str(run.id) for run in real_runs_of(other[0].deployment_id, "1056216p", work)] == [str(other[0].id)]


def test_a_run_replaced_while_it_measured_does_not_store_its_catalogue(two_attempts, local_site, tmp_path,
                                                                      monkeypatch):
    from prefect.flow_engine import run_flow

    from canfar_catalogue.flows import attempts, exposure

    destination = tmp_path / "out"
    early, late, parameters = two_attempts
    answers = iter([None, late])  # no later attempt when it starts; one when it is about to store
    monkeypatch.setattr(exposure.attempts, "later_attempt", lambda run, observation_id: next(answers))
    state = run_flow(catalogue_exposure, flow_run=early, parameters=parameters, return_type="state")
    assert attempts.is_superseded(state), state.message
    assert not destination.exists() or not list(destination.iterdir())
    assert not (Path(local_site["root"]) / "scratch" / str(early.id)).exists()


def _processes_of(flow_run_id: str) -> list[int]:
    """The pids of a flow run's processes, oldest first (the process worker puts its id in the environment)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return sorted(pids)


def _ccd_workers_measuring() -> bool:
    """Whether CCD workers are measuring on this machine: a process named ``ccd-workers`` whose parent is
    too (the warm fork server names itself and what it forks so, and its workers live only while CCDs are
    measured).  Read from /proc at once, where the API's task states come later than a small exposure
    takes to finish."""
    names, parents = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 1:].split()
            names[int(entry.name)], parents[int(entry.name)] = name, int(rest[1])
    return any(name == "ccd-workers" and names.get(parents[pid]) == "ccd-workers" for pid, name in names.items())


@pytest.mark.fault('execution', 'worker process killed mid-exposure', 'the run ends Crashed, the batch starts it again, one catalogue, no process left')
def test_a_killed_exposure_run_is_started_again_and_the_batch_finishes(local_site, tmp_path, record_property):
    """kill -9 of a running child: it ends Crashed, the batch starts it again, nothing half-written stays."""
    record_property("did", 'kill -9: Crashed, started again, finished; nothing half-written')
    from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

    archive = tmp_path / "archive"
    # full-size CCDs: their measuring lasts about a second, time enough to be seen at it
    write_exposure(archive / "1056230p.fits.fz", ExposureSpec(nccd=8, seed=30))
    destination = tmp_path / "vospace"
    killed: list[str] = []

    def killer():
        """Kill the child's own process while its CCD workers measure (the batch's only exposure)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _ccd_workers_measuring():
                for run in _exposure_runs("1056230p"):
                    pids = _processes_of(str(run.id))
                    if pids and not run.state.is_final():
                        os.kill(pids[0], 9)  # the flow run's own process, not its CCD workers
                        killed.append(str(run.id))
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    rows = catalogue_batch(
        ids=["1056230p"], destination=f"file://{destination}", archive=f"file://{archive}",
        exposure_deployment=EXPOSURE_DEPLOYMENT,
    )
    thread.join()
    assert killed, "the child was never seen running"
    assert rows[0]["status"] == "completed" and rows[0]["runs"] == 2
    with get_client(sync_client=True) as client:
        first = client.read_flow_run(killed[0])
    assert first.state.is_crashed()
    assert sorted(p.name for p in destination.iterdir()) == ["1056230p.cat", "1056230p.provenance.json"]
    deadline = time.monotonic() + 10
    while _processes_of(killed[0]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(killed[0]) == [], "the killed run's CCD workers outlived it"


def test_nightly_catalogues_new_arrivals_then_finds_nothing_new(local_site, tmp_path):
    from datetime import datetime, timedelta, timezone

    from canfar_catalogue.flows.nightly import catalogue_nightly
    from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

    archive = tmp_path / "archive"
    for seed, observation_id in enumerate(("1056240p", "1056241p")):
        write_exposure(archive / f"{observation_id}.fits.fz", ExposureSpec.small(seed=40 + seed, nccd=1))
    old = archive / "1056239p.fits.fz"
    write_exposure(old, ExposureSpec.small(seed=39, nccd=1))
    week_ago = time.time() - 7 * 86400
    os.utime(old, (week_ago, week_ago))
    destination = tmp_path / "vospace"
    rows = catalogue_nightly(
        destination=f"file://{destination}", archive=f"file://{archive}",
        since=datetime.now(timezone.utc) - timedelta(days=1),
    )
    assert sorted(r["id"] for r in rows) == ["1056240p", "1056241p"]
    assert all(r["status"] == "completed" for r in rows)
    assert not (destination / "1056239p.cat").exists()  # arrived before the window
    # Without `since`: from the start of the last successful night, minus the look-back margin.
    again = catalogue_nightly(destination=f"file://{destination}", archive=f"file://{archive}")
    assert sorted(r["id"] for r in again) == ["1056240p", "1056241p"]
    assert all(r["status"] == "skipped" for r in again)


def test_credentials_that_expire_before_the_work_fail_early_with_the_renewal_step():
    from datetime import timedelta

    from canfar_catalogue.boundaries.credentials import require_lifetime

    class Proxy:
        uri = "cadc:CFHT"

        def credential_lifetime(self):
            return timedelta(hours=3), "cadc-get-cert -n"

    require_lifetime([Proxy()], timedelta(hours=2))
    with pytest.raises(PermissionDenied, match="3.0 h left.*24.0 h.*cadc-get-cert -n"):
        require_lifetime([Proxy(), object()], timedelta(hours=24))


# -- force, re-attachment and what the batch's table says ----------------------------------------------
@pytest.mark.fault('execution', 'force=true on exposures an earlier batch finished',
                   'a new run each, a new catalogue and record; never the earlier run re-attached')
def test_force_recomputes_a_finished_exposure_in_a_new_run(local_site, tmp_path, record_property):
    destination = f"file://{tmp_path}/vospace"
    record = tmp_path / "vospace" / "1056216p.provenance.json"

    def batch(force: bool) -> dict:
        return catalogue_batch(ids=["1056216p"], destination=destination, archive=local_site["archive"],
                               exposure_deployment=EXPOSURE_DEPLOYMENT, force=force)[0]

    first = batch(False)
    made = json.loads(record.read_text())
    time.sleep(1.1)  # records say when they were made to the second
    forced = [batch(True), batch(True)]
    remade = json.loads(record.read_text())
    assert first["status"] == "completed" and [row["status"] for row in forced] == ["completed", "completed"]
    assert all(row["runs"] == 1 and row["run_origin"] == "started" for row in forced)
    runs = [first["flow_run"], *(row["flow_run"] for row in forced)]
    assert len(set(runs)) == 3  # each force is a new run: none re-attached to an earlier batch's
    assert remade["flow_run_id"] == forced[1]["flow_run"] and remade["created"] > made["created"]
    assert batch(False)["status"] == "skipped"
    record_property("did", f"3 runs for 3 batches (2 forced); record remade at {remade['created']}")


@pytest.mark.fault('execution', 'an earlier batch left a run in flight and one stuck Pending (its worker gone)',
                   'a new batch re-attaches to the first, starts the stuck one anew, and says which in its table')
def test_a_new_batch_re_attaches_to_runs_in_flight_but_not_to_one_stuck_pending(local_site, tmp_path, record_property):
    """An earlier batch is still waiting for two children: one in flight, one claimed by a worker that
    went away (Pending, no infrastructure).  A new batch over those and two other exposures re-attaches
    to the first, starts the stuck one anew, skips the finished one and starts the last; its table
    says which is which."""
    from concurrent.futures import ThreadPoolExecutor

    from prefect.states import Cancelled, Pending

    from .conftest import deploy_exposures_on, stop

    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "late-pool", "--type", "process", "--overwrite"],
                   env=local_site["env"], check=True, capture_output=True)
    late = deploy_exposures_on("late-pool", "late", {})
    destination = f"file://{tmp_path}/vospace"
    in_flight, stuck, done, new = "1056213p", "1056215p", "1056216p", "1056217p"

    def batch(ids: list[str], deployment: str = late) -> list[dict]:
        return catalogue_batch(ids=ids, destination=destination, archive=local_site["archive"],
                               exposure_deployment=deployment)

    batch([done], EXPOSURE_DEPLOYMENT)
    threads = ThreadPoolExecutor(2)
    earlier = threads.submit(batch, [in_flight, stuck])  # no worker serves late-pool yet: its children wait
    first = {name: _wait_for_run_named(late, name) for name in (in_flight, stuck)}
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(first[stuck].id, Pending(name="Submitting"), force=True)  # claimed, then nothing
    time.sleep(11)  # longer than the tests' stuck_pending_seconds
    again = threads.submit(batch, [in_flight, stuck, done, new])
    _wait_for_run_named(late, new)  # the new batch has dispatched everything
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "late-pool", "--type", "process"],
                              env=local_site["env"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        rows = {row["id"]: row for row in again.result(timeout=300)}
    finally:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(first[stuck].id, Cancelled(message="test over"), force=True)
        with pytest.raises(BatchFailed):  # its stuck child was cancelled
            earlier.result(timeout=120)
        stop(worker)
    assert rows[in_flight]["status"] == "completed" and rows[in_flight]["run_origin"] == "re-attached"
    assert rows[in_flight]["flow_run"] == str(first[in_flight].id) and rows[in_flight]["runs"] == 0
    assert rows[in_flight]["message"] == "re-attached to a run in flight from an earlier batch"
    assert rows[stuck]["status"] == "completed" and rows[stuck]["run_origin"] == "started"
    assert rows[stuck]["flow_run"] != str(first[stuck].id) and rows[stuck]["runs"] == 1
    assert rows[done]["status"] == "skipped" and rows[done]["flow_run"] == "" and rows[done]["runs"] == 0
    assert rows[done]["run_origin"] == "" and rows[new]["run_origin"] == "started" and rows[new]["runs"] == 1
    completed = [r for r in _exposure_runs(in_flight) if r.deployment_id == first[in_flight].deployment_id
                 and r.state.is_completed()]
    assert len(completed) == 1  # one run catalogued it, for both batches
    record_property("did", ", ".join(f"{r['id']} {r['status']}/{r['run_origin'] or 'no run'}/{r['runs']} started"
                                     for r in rows.values()))


@pytest.mark.fault('execution', "a user's forced batch is measuring an exposure when a batch that skips finished work "
                   "(the nightly) asks for it", 'the second follows the forced run: the exposure is measured once')
def test_a_batch_that_skips_finished_work_follows_a_forced_run_of_it_in_flight(local_site, tmp_path, monkeypatch,
                                                                               record_property):
    from concurrent.futures import ThreadPoolExecutor

    from canfar_catalogue.flows import batch as batch_module

    from .conftest import deploy_exposures_on, stop

    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "forced-pool", "--type", "process", "--overwrite"],
                   env=local_site["env"], check=True, capture_output=True)
    deployment = deploy_exposures_on("forced-pool", "forced", {})
    destination = f"file://{tmp_path}/vospace"
    decided = threading.Semaphore(0)
    follow_or_start = batch_module._follow_or_start

    def counted(*args, **kwargs):
        follow_or_start(*args, **kwargs)
        decided.release()

    monkeypatch.setattr(batch_module, "_follow_or_start", counted)

    def batch(force: bool) -> dict:
        return catalogue_batch(ids=["1056213p"], destination=destination, archive=local_site["archive"],
                               exposure_deployment=deployment, force=force)[0]

    threads = ThreadPoolExecutor(2)
    forced = threads.submit(batch, True)  # no worker serves forced-pool yet: its run waits
    assert decided.acquire(timeout=120)
    first = _wait_for_run_named(deployment, "1056213p")
    skipping = threads.submit(batch, False)
    assert decided.acquire(timeout=120)  # the second batch has followed its run, or started one
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "forced-pool", "--type", "process"],
                              env=local_site["env"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        rows = [forced.result(timeout=300), skipping.result(timeout=300)]
    finally:
        stop(worker)
    assert [row["status"] for row in rows] == ["completed", "completed"]
    assert rows[0]["run_origin"] == "started" and rows[0]["flow_run"] == str(first.id)
    assert rows[1]["run_origin"] == "re-attached" and rows[1]["flow_run"] == str(first.id) and rows[1]["runs"] == 0
    runs = [r for r in _exposure_runs("1056213p") if r.deployment_id == first.deployment_id]
    assert len(runs) == 1 and runs[0].state.is_completed()  # measured once, for both batches
    record_property("did", f"one run of 1056213p for the forced batch and the skipping one: {runs[0].name}")


def _wait_for_run_named(deployment: str, name: str, timeout: float = 120):
    """The first run of ``deployment`` called ``name``."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        while time.monotonic() < deadline:
            runs = [r for r in _exposure_runs(name) if r.deployment_id == deployment_id]
            if runs:
                return runs[0]
            time.sleep(0.2)
    raise TimeoutError(f"no run {name} of {deployment}")
