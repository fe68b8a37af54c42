"""The provisioning policy (pure), and the provisioning flow against the fake OpenStack, schedd and pool.

The flow runs for real under Prefect, through the real openstacksdk over
``requests_mock``; the fake schedd holds idle jobs until the fake pool has
free cores of the right image, as HTCondor's negotiator would.
"""

from __future__ import annotations

import time

import htcondor2
import pytest

from canfar_catalogue.boundaries.errors import PermissionDenied, TransientError
from canfar_catalogue.flows.provision import provision
from canfar_catalogue.flows.provision_policy import VM, Flavour, Group, Quota, Settings, decide

from .conftest import everything_prefect_holds
from .fake_cloud import FakeOpenStack
from .fake_schedd import COMPLETED, FakePool, FakeSchedd

GROUP = Group("megapipe:canfar-catalogue-test", "c2-7.5gb-30")
FLAVOURS = {GROUP.flavour: Flavour(2, 7680)}
ROOMY = Quota(100, 200, 100 * 7680)


# -- the policy ------------------------------------------------------------------------------------
def _vm(name: str, **fields) -> VM:
    defaults = dict(group=GROUP, status="ACTIVE", created=0.0, status_since=0.0, registered=True, slots=2)
    return VM(name, **{**defaults, **fields})


def test_a_shortfall_is_covered_with_whole_vms_within_quota_and_the_per_cycle_limit():
    assert decide(1000, {GROUP: 5}, [], ROOMY, FLAVOURS, {GROUP: 2}).boot == {GROUP: 3}
    assert decide(1000, {GROUP: 50}, [], ROOMY, FLAVOURS, {GROUP: 2}, Settings(max_starts_per_cycle=5)).boot == {GROUP: 5}
    assert decide(1000, {GROUP: 50}, [], Quota(100, 6, 10**6), FLAVOURS, {GROUP: 2}).boot == {GROUP: 3}  # cores
    assert decide(1000, {GROUP: 50}, [_vm("a", busy=2)], ROOMY, FLAVOURS, {GROUP: 2}, Settings(max_vms=3)).boot == {GROUP: 2}


def test_free_slots_and_booting_vms_count_before_anything_is_booted():
    free = [_vm("a", busy=0, idle_since=990.0)]
    assert decide(1000, {GROUP: 2}, free, ROOMY, FLAVOURS, {GROUP: 2}).boot == {}
    coming = [_vm("b", status="BUILD", registered=False)]
    assert decide(1000, {GROUP: 3}, coming, ROOMY, FLAVOURS, {GROUP: 2}).boot == {GROUP: 1}


def test_broken_and_idle_vms_are_retired_but_never_while_work_waits_for_them():
    settings = Settings(error_seconds=300, build_seconds=1200, come_alive_seconds=2400, keep_alive_seconds=120)
    vms = [
        _vm("error-new", status="ERROR", registered=False, status_since=900),
        _vm("error-old", status="ERROR", registered=False, status_since=600),
        _vm("stuck", status="BUILD", registered=False, status_since=-300),
        _vm("never-joined", registered=False, created=-1500),
        _vm("idle-long", busy=0, idle_since=800),
        _vm("idle-short", busy=0, idle_since=950),
        _vm("busy", busy=1),
    ]
    retired = dict(decide(1000, {}, vms, ROOMY, FLAVOURS, {GROUP: 2}, settings).retire)
    assert set(retired) == {"error-old", "stuck", "never-joined", "idle-long"}
    assert "ERROR" in retired["error-old"] and "never joined" in retired["never-joined"]
    waiting = dict(decide(1000, {GROUP: 1}, vms, ROOMY, FLAVOURS, {GROUP: 2}, settings).retire)
    assert "idle-long" not in waiting  # hysteresis: a job still waits for this image


def test_with_known_runtimes_the_pool_is_sized_to_the_drain_target():
    settings = Settings(drain_target_seconds=1800, max_starts_per_cycle=100)
    # 500 jobs of 120 s on 2-slot VMs: 60,000 job-seconds / 1800 s = 34 slots = 17 VMs, not 250
    assert decide(0, {GROUP: 500}, [], ROOMY, FLAVOURS, {GROUP: 2}, settings, runtime_seconds=120).boot == {GROUP: 17}
    running = [_vm(f"v{i}", busy=2) for i in range(17)]
    assert decide(0, {GROUP: 450}, running, ROOMY, FLAVOURS, {GROUP: 2}, settings, runtime_seconds=120).boot == {}


# -- the flow ----------------------------------------------------------------------------------------
@pytest.fixture
def site(tmp_path, monkeypatch, prefect_server):
    """A fake cloud (as if the openrc were sourced), a fake schedd holding idle jobs, and a fake pool."""
    state = tmp_path / "condor"
    state.mkdir()
    (state / "matchmaking").touch()
    monkeypatch.setenv("FAKE_SCHEDD_STATE", str(state))
    token = tmp_path / "pool.token"
    token.write_text("eyJ-pool-token-marker")
    token.chmod(0o600)
    with FakeOpenStack(password="os-password-marker") as cloud:
        for key, value in cloud.environment().items():
            monkeypatch.setenv(key, value)
        pool = FakePool(state)
        cloud.on_active = lambda server: pool.join(server.id, server.metadata["vm_type"])  # what its cloud-init does
        yield {"cloud": cloud, "schedd": FakeSchedd(state), "pool": pool, "token": token}


FAST = {
    "error_seconds": 0, "build_seconds": 0, "come_alive_seconds": 3600, "keep_alive_seconds": 0,
    "boot_wait_seconds": 2, "delete_wait_seconds": 2, "job_runtime_seconds": 0, "api_retries": 0,
}


def _cycle(site, dry_run: bool = False, **policy) -> dict:
    return provision(
        project="megapipe", keypair="jdoe-key", network="megapipe-vlan", central_manager="cm.example.org",
        pool_token_file=str(site["token"]), owner="jdoe", dry_run=dry_run, policy={**FAST, **policy},
    )


def _submit_jobs(site, count: int, seconds: float = 0.2) -> list[int]:
    clusters = []
    for _ in range(count):
        result = site["schedd"].submit(htcondor2.Submit({
            "executable": "/bin/sleep", "arguments": str(seconds), "request_cpus": "1",
            "MY.VMType": f'"{GROUP.vm_type}"', "MY.VMInstanceType": f'"{GROUP.flavour}"',
        }))
        clusters.append(result.cluster())
    return clusters


def _ours(site) -> list:
    return [s for s in site["cloud"].servers.values() if s.metadata.get("canfar-catalogue") == "catalogue-megapipe"]


def _run_jobs(site, clusters: list[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        site["schedd"].negotiate()
        if all(site["schedd"]._load(c)["JobStatus"] == COMPLETED for c in clusters):
            return
        time.sleep(0.2)
    raise TimeoutError("jobs did not finish")


@pytest.mark.fault('cloud', 'strangers in the project', 'counted against the quota, never touched')
def test_demand_rises_quota_caps_it_jobs_finish_vms_retire_and_strangers_stay(site, record_property):
    record_property("did", 'stranger untouched through boot and retirement')
    cloud = site["cloud"]
    stranger = cloud.add_stranger()
    cloud.quota["instances"] = 3  # the stranger uses one: two left for us
    clusters = _submit_jobs(site, 6)

    first = _cycle(site)
    assert first["booted"] == 2 and first["quota_left"]["instances"] == 0 and first["strangers"] == 1  # 3 wanted
    ours = _ours(site)
    assert len(ours) == 2 and all(s.status == "ACTIVE" for s in ours)
    assert all(s.metadata["vm_type"] == GROUP.vm_type for s in ours)
    assert len(site["pool"].ads()) == 2  # their cloud-init joined the pool

    _run_jobs(site, clusters)
    idle = _cycle(site)
    assert idle["retired"] == 2 and idle["booted"] == 0
    assert _ours(site) == [] and stranger.id in cloud.servers
    drained = [a for a in site["pool"].ads() if a["Draining"]]
    assert len(drained) == 2  # drained before they were deleted


@pytest.mark.fault('cloud', 'VM in ERROR', 'retired after error_seconds and replaced')
@pytest.mark.fault('cloud', 'crash between boot and record', 'the next cycle adopts the VM; nothing booted twice')
def test_a_vm_in_error_is_replaced_and_a_crash_after_boot_is_adopted_not_booted_twice(site, record_property):
    record_property("did", 'ERROR VM deleted and replaced; after the crash 3 VMs, not 4')
    cloud = site["cloud"]
    _submit_jobs(site, 2)  # one VM's worth
    cloud.next_fate = ["error"]
    assert _cycle(site)["booted"] == 1
    errored = _ours(site)
    assert [s.status for s in errored] == ["ERROR"]
    second = _cycle(site)  # the ERROR VM is retired and a replacement booted
    assert second["retired"] == 1 and second["booted"] == 1
    assert errored[0].id not in cloud.servers and [s.status for s in _ours(site)] == ["ACTIVE"]

    _submit_jobs(site, 4, seconds=30)  # two more VMs wanted; the cycle dies right after create_server
    cloud.fault("crash-after-boot", 1)
    with pytest.raises(Exception):
        _cycle(site)
    assert len(_ours(site)) == 2  # one booted before the crash
    third = _cycle(site)
    assert len(_ours(site)) == 3 and third["booted"] == 1  # the crashed cycle's VM counted, not booted again


@pytest.mark.fault('cloud', 'VM stuck in BUILD', 'retired after build_seconds')
def test_a_vm_stuck_in_build_is_retired(site, record_property):
    record_property("did", 'deleted')
    _submit_jobs(site, 2)
    site["cloud"].next_fate = ["stuck"]
    assert _cycle(site, build_seconds=3600)["booted"] == 1
    stuck = _ours(site)
    assert [s.status for s in stuck] == ["BUILD"]
    assert _cycle(site, build_seconds=0)["retired"] == 1
    assert stuck[0].id not in site["cloud"].servers


def test_a_vm_that_never_joins_the_pool_is_an_orphan_then_retired(site):
    site["cloud"].on_active = lambda server: None  # its cloud-init never reaches the pool
    _submit_jobs(site, 2)
    assert _cycle(site)["booted"] == 1
    waiting = _cycle(site, come_alive_seconds=3600)
    assert len(waiting["orphans"]) == 1 and waiting["booted"] == 0  # counted as coming, not booted again
    assert _cycle(site, come_alive_seconds=0)["retired"] == 1


@pytest.mark.parametrize("fault, error, match", [
    pytest.param("unauthorized", PermissionDenied, "did not accept the credentials.*openrc", marks=pytest.mark.fault(
        "cloud", "bad or expired credentials", "the cycle fails naming the openrc / application credential; the next recovers")),
    pytest.param("timeout", TransientError, "cannot reach OpenStack", marks=pytest.mark.fault(
        "cloud", "API timeout", "the cycle fails as transient; the next recovers")),
])
def test_cloud_failures_end_the_cycle_clearly_and_the_next_one_recovers(site, fault, error, match):
    _submit_jobs(site, 2)
    site["cloud"].fault(fault)
    with pytest.raises(error, match=match):
        _cycle(site)
    site["cloud"].faults.clear()
    assert _cycle(site)["booted"] == 1


@pytest.mark.fault('cloud', 'quota exceeded', 'reported; the cycle completes; the next one boots')
@pytest.mark.fault('cloud', 'unknown image', 'reported by name; nothing booted')
def test_quota_exceeded_and_unknown_names_are_reported_not_fatal(site, caplog, record_property):
    record_property("did", 'not booted: quota exceeded; next cycle booted 1; missing image logged')
    _submit_jobs(site, 2)
    site["cloud"].fault("quota", 1)
    assert _cycle(site)["booted"] == 0
    assert _cycle(site)["booted"] == 1
    site["cloud"].images.clear()
    _submit_jobs(site, 10)
    result = _cycle(site)
    assert result["booted"] == 0  # the image is gone: nothing to boot, the cycle still reports


def test_a_dry_run_changes_nothing(site):
    _submit_jobs(site, 4)
    before = len(site["cloud"].requests)
    result = _cycle(site, dry_run=True)
    assert result["dry_run"] and result["planned_boots"] == 2 and result["booted"] == 0
    assert not [r for r in site["cloud"].requests[before:] if r[0] in ("POST", "DELETE") and "nova" in r[1]]


def test_passwords_and_the_pool_token_never_reach_logs_or_artifacts(site):
    _submit_jobs(site, 2)
    _cycle(site)
    booted = _ours(site)[0]
    import base64

    assert "eyJ-pool-token-marker" in base64.b64decode(booted.user_data).decode()  # it does reach the VM
    text = everything_prefect_holds()
    assert "booted" in text
    assert "os-password-marker" not in text and "eyJ-pool-token-marker" not in text


@pytest.mark.fault('cloud', 'delete fails', 'reported; retried next cycle')
def test_a_vm_that_will_not_delete_is_reported_and_retried_next_cycle(site, record_property):
    record_property("did", 'retirement failed, retried next cycle: deleted')
    _submit_jobs(site, 2)
    site["cloud"].next_fate = ["error"]
    _cycle(site)
    site["cloud"].fault("delete-fails", 1)
    failed = _cycle(site, max_starts_per_cycle=0)
    assert failed["retired"] == 0 and len(_ours(site)) == 1
    assert _cycle(site, max_starts_per_cycle=0)["retired"] == 1 and _ours(site) == []
