"""Boot OpenStack workers for idle HTCondor jobs and retire them when idle: one cycle per run.

What ``canfar_submit``'s cloud scheduler did, as a flow a deployment runs every
minute, so every boot and retirement is visible in the Prefect UI.  A cycle:

1. reads demand from the schedd: idle jobs per (``VMType``, ``VMInstanceType``)
   of this project, as the htcondor worker tags them;
2. reads the cloud (every server of the project: ours carry metadata naming
   this provisioner; the others are strangers and never touched) and the
   pool (startds advertising their Nova server id), and joins them;
3. asks the pure policy (``provision_policy.decide``) what to boot and retire;
4. retires (drain, then delete, then wait) and boots (deterministic names, so
   a cycle that crashed after ``create_server`` adopts its VM instead of
   booting it twice), unless ``dry_run``;
5. publishes a table of VMs and what happened to each.

Nothing is remembered between cycles except when each VM became idle (a
Prefect Variable); everything else is read again, so any crash is recovered
by the next cycle.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from string import Template
from typing import Any

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.variables import Variable

from .. import config
from ..boundaries.cloud import OWNER_KEY, Cloud, QuotaExceeded, Resolved, Server
from ..boundaries.errors import BoundaryError, PermanentError
from ..boundaries.pool import Startd, open_pool
from ..boundaries.schedd import open_schedd
from .provision_policy import VM, Flavour, Group, Plan, Quota, Settings, decide

SETTINGS = config.settings()["provisioning"]
IDLE_VARIABLE = "catalogue-provision-idle-since"


@dataclass
class Demand:
    idle: dict[Group, int]
    request_cpus: dict[Group, int]


def read_demand(project: str) -> Demand:
    """Idle jobs per group, for images of ``project`` only."""
    ads = open_schedd().query("JobStatus == 1 && VMType =!= undefined", ["VMType", "VMInstanceType", "RequestCpus"])
    idle: dict[Group, int] = {}
    cpus: dict[Group, int] = {}
    for ad in ads:
        vm_type = str(ad.get("VMType", ""))
        if not vm_type.startswith(f"{project}:"):
            continue
        group = Group(vm_type, str(ad.get("VMInstanceType", "")))
        idle[group] = idle.get(group, 0) + 1
        cpus[group] = max(cpus.get(group, 1), int(ad.get("RequestCpus", 1)))
    return Demand(idle, cpus)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


def _group_of(server: Server) -> Group:
    """The group one of our servers was booted for, from the metadata we gave it."""
    return Group(server.metadata.get("vm_type", ""), server.metadata.get("flavour", ""))


def _vm(
    server: Server, group: Group, startd: Startd | None, request_cpus: int, idle_since: float | None, slots: int
) -> VM:
    """The policy's view of one of our servers; ``slots`` is what its flavour will give once it joins."""
    vm = VM(server.id, group, server.status, created=server.created, status_since=server.updated, slots=slots)
    if startd:
        vm.registered = True
        vm.draining = startd.draining
        vm.slots = max(startd.total_cpus // request_cpus, 1)
        vm.busy = math.ceil((startd.total_cpus - startd.free_cpus) / request_cpus)
        vm.idle_since = idle_since if vm.busy == 0 else None
    return vm


@flow(name="catalogue-provision", persist_result=False)
def provision(
    project: str,
    keypair: str,
    network: str,
    central_manager: str,
    pool_token_file: str,
    owner: str,
    cloud: str = "",
    provisioner: str = "",
    dry_run: bool = False,
    policy: dict[str, Any] | None = None,
) -> dict:
    """One provisioning cycle for ``project``'s jobs; see the module's description.

    ``cloud`` names a clouds.yaml entry; empty uses the sourced openrc
    environment.  ``policy`` overrides ``[provisioning]`` settings.
    """
    logger = get_run_logger()
    settings_section = {**SETTINGS, **(policy or {})}
    settings = Settings.from_section(settings_section)
    provisioner = provisioner or f"catalogue-{_slug(project)}"
    now = time.time()

    demand = read_demand(project)
    sky = Cloud(cloud, float(settings_section["api_timeout_seconds"]), int(settings_section["api_retries"]))
    servers = [s for s in sky.servers() if s.status not in ("DELETED", "SOFT_DELETED")]
    ours = [s for s in servers if s.ours(provisioner)]
    strangers = [s for s in servers if not s.ours(provisioner)]
    pool = open_pool()
    startds = {s.server_id: s for s in pool.startds()}

    resolved: dict[Group, Resolved] = {}
    flavours: dict[str, Flavour] = {}
    for group in demand.idle:
        try:
            resolved[group] = sky.resolve(group.image, group.flavour, keypair, network)
        except BoundaryError as exc:
            logger.error(
                "cannot boot for %d idle jobs wanting %s on %s: %s", demand.idle[group], group.image, group.flavour, exc
            )
            continue
        flavours[group.flavour] = Flavour(resolved[group].cores, resolved[group].ram_mb)
    slots = {g: max(r.cores // demand.request_cpus.get(g, 1), 1) for g, r in resolved.items()}
    idle_since = _load_idle_since()
    vms = []
    for server in ours:
        group = _group_of(server)
        startd = startds.get(server.id)
        if startd and startd.total_cpus == startd.free_cpus:
            idle_since.setdefault(server.id, now)
        else:
            idle_since.pop(server.id, None)
        request_cpus = demand.request_cpus.get(group, 1)
        vms.append(_vm(server, group, startd, request_cpus, idle_since.get(server.id), slots.get(group, 1)))

    headroom = sky.headroom()
    typical_runtime = float(settings_section["job_runtime_seconds"]) or None
    plan = decide(
        now, {g: n for g, n in demand.idle.items() if g in resolved}, vms,
        Quota(headroom.instances, headroom.cores, headroom.ram_mb), flavours, slots, settings, typical_runtime,
    )

    actions: dict[str, str] = {}
    if dry_run:
        for vm_id, why in plan.retire:
            actions[vm_id] = f"would retire: {why}"
        for group, count in plan.boot.items():
            logger.info("dry run: would boot %d × %s (%s)", count, group.vm_type, group.flavour)
    else:
        _retire(sky, pool, plan, startds, settings_section, actions)
        booted = _boot(sky, plan, resolved, servers, settings_section, provisioner, project, central_manager,
                       pool_token_file, owner, actions)
        for server_id in booted:
            idle_since.pop(server_id, None)
        headroom = sky.headroom()  # what is left after this cycle's boots and deletions
    ours_ids = {s.id for s in ours}
    _save_idle_since({k: v for k, v in idle_since.items() if k in ours_ids})
    return _report(now, ours, strangers, startds, plan, actions, headroom, dry_run)


def _retire(sky: Cloud, pool, plan: Plan, startds: dict[str, Startd], settings: dict, actions: dict[str, str]) -> None:
    """Drain first (no new job starts), then delete and wait; a failure is retried next cycle."""
    logger = get_run_logger()
    for vm_id, why in plan.retire:
        startd = startds.get(vm_id)
        try:
            if startd and not startd.draining:
                pool.drain(startd.machine)
                now_busy = {s.server_id: s for s in pool.startds()}.get(vm_id)
                if now_busy and now_busy.free_cpus < now_busy.total_cpus:
                    actions[vm_id] = f"draining ({why}); deleted once its jobs finish"
                    continue
            sky.delete(vm_id, float(settings["delete_wait_seconds"]))
            actions[vm_id] = f"retired: {why}"
            logger.info("retired %s: %s", vm_id, why)
        except BoundaryError as exc:
            actions[vm_id] = f"retirement failed, retried next cycle: {exc}"
            logger.warning("could not retire %s (%s): %s", vm_id, why, exc)


def _boot(
    sky: Cloud, plan: Plan, resolved: dict[Group, Resolved], servers: list[Server], settings: dict, provisioner: str,
    project: str, central_manager: str, pool_token_file: str, owner: str, actions: dict[str, str],
) -> list[str]:
    logger = get_run_logger()
    if not plan.boot:
        return []
    try:
        token = open(pool_token_file).read().strip()
    except OSError as exc:
        raise PermanentError(f"cannot read the pool token {pool_token_file}: {exc.strerror}") from None
    template = Template(config.path("vm-cloud-init.yaml").read_text())
    cycle = str(runtime.flow_run.id or "local")[:8]
    taken = {s.name for s in servers}
    booted = []
    for group, count in plan.boot.items():
        for index in range(count):
            name = f"{provisioner}-{_slug(group.image)}-{cycle}-{index}"
            if name in taken:  # booted by this cycle before it crashed: adopt it
                actions[name] = "adopted (booted before a crash)"
                continue
            user_data = template.substitute(
                token=token, central_manager=central_manager, owner=owner, vm_type=group.vm_type
            )
            metadata = {OWNER_KEY: provisioner, "project": project, "vm_type": group.vm_type, "flavour": group.flavour}
            try:
                server_id = sky.boot(name, resolved[group], user_data, metadata)
            except QuotaExceeded as exc:
                logger.warning("%s", exc)
                actions[name] = "not booted: quota exceeded"
                return booted
            except BoundaryError as exc:
                logger.warning("could not boot %s: %s", name, exc)
                actions[name] = f"not booted: {exc}"
                continue
            booted.append(server_id)
            try:
                status = sky.wait_active(server_id, float(settings["boot_wait_seconds"]))
                actions[server_id] = f"booted ({status})"
            except BoundaryError as exc:
                actions[server_id] = f"booted, not active yet: {exc}"
            logger.info("booted %s (%s) for %s on %s", name, server_id, group.vm_type, group.flavour)
    return booted


def _load_idle_since() -> dict[str, float]:
    value = Variable.get(IDLE_VARIABLE, default=None)
    return {k: float(v) for k, v in (value or {}).items()}


def _save_idle_since(idle_since: dict[str, float]) -> None:
    Variable.set(IDLE_VARIABLE, idle_since, overwrite=True)


def _report(now, ours, strangers, startds, plan, actions, headroom, dry_run) -> dict:
    rows = []
    for server in ours:
        startd = startds.get(server.id)
        rows.append({
            "vm": server.name,
            "id": server.id,
            "image": server.metadata.get("vm_type", ""),
            "flavour": server.metadata.get("flavour", ""),
            "status": server.status,
            "in pool": "yes" if startd else "no",
            "busy cores": f"{startd.total_cpus - startd.free_cpus}/{startd.total_cpus}" if startd else "",
            "age (min)": round((now - server.created) / 60, 1),
            "action": actions.get(server.id, ""),
        })
    ours_ids = {s.id for s in ours}
    for name, action in actions.items():
        if name not in ours_ids:
            rows.append({"vm": name, "id": "", "image": "", "flavour": "", "status": "", "in pool": "",
                         "busy cores": "", "age (min)": "", "action": action})
    orphans = [s for s in ours if s.id not in startds and s.status == "ACTIVE"]
    summary = {
        "vms": len(ours),
        "by_status": {status: sum(s.status == status for s in ours) for status in sorted({s.status for s in ours})},
        "booted": sum(1 for a in actions.values() if a.startswith("booted")),
        "retired": sum(1 for a in actions.values() if a.startswith("retired")),
        "planned_boots": plan.booting,
        "planned_retirements": len(plan.retire),
        "orphans": [s.id for s in orphans],
        "strangers": len(strangers),
        "quota_left": {"instances": headroom.instances, "cores": headroom.cores, "ram_mb": headroom.ram_mb},
        "vm_hours": round(sum(now - s.created for s in ours) / 3600, 2),
        "dry_run": dry_run,
    }
    if rows:
        create_table_artifact(key="provisioning-vms", table=rows, description="our VMs and what this cycle did")
    create_markdown_artifact(
        key="provisioning-cycle",
        markdown=f"### Provisioning cycle{' (dry run)' if dry_run else ''}\n\n```json\n{json.dumps(summary, indent=2)}\n```\n",
    )
    get_run_logger().info(
        "%d VMs (%s); booted %d, retired %d; %d orphans, %d strangers (not ours, untouched); quota left %d instances",
        summary["vms"], summary["by_status"], summary["booted"], summary["retired"], len(orphans), len(strangers),
        headroom.instances,
    )
    return summary
