"""How many VMs to boot and which to retire: pure decisions, no I/O.

One cycle of the provisioning flow, and every step of the simulation in
``bench/``, calls :func:`decide` with what the pool and the cloud look like
now.  Demand is counted per (image, flavour) group, as ``canfar_submit``'s
``VMType`` / ``VMInstanceType`` job attributes name them.

The rules, in the order they apply:

* A VM in ERROR longer than ``error_seconds``, in BUILD longer than
  ``build_seconds``, or up but not in the pool after ``come_alive_seconds`` is
  retired: it will not become useful.
* A VM in the pool with no job for ``keep_alive_seconds`` is retired, unless
  its group still has idle jobs (hysteresis: a VM is never retired while work
  waits for it, and never booted while a VM of its group has a free slot).
* Idle jobs that the free slots and the VMs still booting will not absorb are
  a shortfall; it is covered with whole VMs, within the quota, the per-cloud
  maximum and the number of boots allowed per cycle.
* When the typical job runtime is known, the pool is sized to drain the queue
  in ``drain_target_seconds``, not as fast as the quota allows: a VM booted for
  the last minutes of a burst would mostly sit idle, and VMs kept busy for
  the whole target often live on into the next burst instead of being
  deleted and booted again.  Shorter targets finish bursts sooner and leave
  more VM time idle (``bench/simulate_provisioning.py`` measures both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BOOTING = ("BUILD",)
GONE = ("DELETED", "SOFT_DELETED")


@dataclass(frozen=True, order=True)
class Group:
    """What a job asks for: ``VMType`` ("<project>:<image>") and ``VMInstanceType`` (flavour)."""

    vm_type: str
    flavour: str

    @property
    def image(self) -> str:
        return self.vm_type.split(":", 1)[-1]


@dataclass
class VM:
    id: str
    group: Group
    status: str  # Nova's: BUILD, ACTIVE, ERROR, DELETING...
    created: float  # when it was asked for (seconds)
    status_since: float  # when it entered ``status``
    registered: bool = False  # its startd is in the pool
    slots: int = 1  # jobs it can run at once
    busy: int = 0  # jobs it runs now
    idle_since: float | None = None  # registered, no job, since when
    draining: bool = False


@dataclass(frozen=True)
class Quota:
    """What the project may still start (limits minus everything running, ours or not)."""

    instances: int
    cores: int
    ram_mb: int


@dataclass(frozen=True)
class Flavour:
    cores: int
    ram_mb: int


@dataclass(frozen=True)
class Settings:
    max_vms: int = 32  # ours, per cloud, whatever their state
    max_starts_per_cycle: int = 5
    come_alive_seconds: float = 2400.0
    build_seconds: float = 1200.0
    error_seconds: float = 300.0
    keep_alive_seconds: float = 120.0
    drain_target_seconds: float = 1800.0  # how long the queue may take to drain, when runtimes are known

    @classmethod
    def from_section(cls, section: dict) -> "Settings":
        names = cls.__dataclass_fields__
        return cls(**{k: type(getattr(cls, k))(v) for k, v in section.items() if k in names})


@dataclass
class Plan:
    boot: dict[Group, int] = field(default_factory=dict)
    retire: list[tuple[str, str]] = field(default_factory=list)  # (vm id, why)

    @property
    def booting(self) -> int:
        return sum(self.boot.values())


def decide(
    now: float,
    idle_jobs: dict[Group, int],
    vms: list[VM],
    quota: Quota,
    flavours: dict[str, Flavour],
    slots_per_vm: dict[Group, int],
    settings: Settings = Settings(),
    runtime_seconds: float | None = None,
) -> Plan:
    """The boots and retirements for this cycle."""
    plan = Plan()
    alive = [vm for vm in vms if vm.status not in GONE and vm.status != "DELETING"]
    for vm in alive:
        why = _why_retire(now, vm, idle_jobs.get(vm.group, 0), settings)
        if why:
            plan.retire.append((vm.id, why))
    retiring = {vm_id for vm_id, _ in plan.retire}
    staying = [vm for vm in alive if vm.id not in retiring]

    starts_left = settings.max_starts_per_cycle
    room = settings.max_vms - len([vm for vm in vms if vm.status not in GONE])
    instances, cores, ram = quota.instances, quota.cores, quota.ram_mb
    for group in sorted(idle_jobs, key=lambda g: -idle_jobs[g]):
        waiting = idle_jobs[group]
        mine = [vm for vm in staying if vm.group == group]
        free = sum(max(vm.slots - vm.busy, 0) for vm in mine if vm.registered and not vm.draining)
        coming = sum(vm.slots for vm in mine if not vm.registered)
        shortfall = waiting - free - coming
        if shortfall <= 0:
            continue
        per_vm = max(slots_per_vm.get(group, 1), 1)
        want = math.ceil(shortfall / per_vm)
        if runtime_seconds:
            busy = sum(vm.busy for vm in mine)
            work = (waiting + busy / 2) * runtime_seconds  # running jobs are half done, on average
            have = sum(vm.slots for vm in mine if not vm.draining)
            want = min(want, math.ceil((math.ceil(work / settings.drain_target_seconds) - have) / per_vm))
        flavour = flavours.get(group.flavour)
        limits = [want, starts_left, room, instances]
        if flavour:
            limits += [cores // max(flavour.cores, 1), ram // max(flavour.ram_mb, 1)]
        count = max(min(limits), 0)
        if count:
            plan.boot[group] = count
            starts_left -= count
            room -= count
            instances -= count
            if flavour:
                cores -= count * flavour.cores
                ram -= count * flavour.ram_mb
    return plan


def _why_retire(now: float, vm: VM, waiting: int, settings: Settings) -> str | None:
    age = now - vm.status_since
    if vm.status == "ERROR" and age >= settings.error_seconds:
        return f"in ERROR for {age:.0f} s"
    if vm.status in BOOTING and age >= settings.build_seconds:
        return f"still building after {age:.0f} s"
    if vm.status == "ACTIVE" and not vm.registered and now - vm.created >= settings.come_alive_seconds:
        return f"never joined the pool in {now - vm.created:.0f} s"
    if vm.registered and vm.busy == 0 and vm.idle_since is not None and waiting == 0:
        idle = now - vm.idle_since
        if idle >= settings.keep_alive_seconds:
            return f"idle for {idle:.0f} s"
    return None
