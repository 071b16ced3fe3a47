"""What ``WORKERS=auto`` means: how many uvicorn worker processes this machine or container holds.

One worker serves with its event loop and one TensorFlow thread, about one core and a bit, so
a container on several cores needs several workers to use them (``make bench``'s ``auto``
config against ``batched``). ``auto`` is:

- **one** when the service runs on a GPU: ``DEVICE=gpu``, or ``DEVICE=auto`` and an NVIDIA GPU
  is visible (``/dev/nvidia0``, ...). Each worker would load the models onto the first GPU
  and claim its memory, so one process per GPU;
- otherwise **one per CPU the process may use**: the CPUs it may run on
  (``os.sched_getaffinity``), fewer if its cgroup has a CPU quota (cgroup v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; whole CPUs of it, at least one), the smallest
  quota of the process's cgroup and its ancestors;
- **capped by memory**: no more workers than fit, at :data:`MEMORY_PER_WORKER` each, in the
  cgroup's memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), or in the
  machine's memory where there is no limit;
- and **at least one**.

The readers take the files they read as arguments (``/proc``, ``/dev`` by default), so that
tests run them on fake ones; :func:`decide` is the rule alone, on plain numbers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

#: What one worker needs: its resident memory with both models loaded and serving, rounded up
#: with room for large requests (measured in docs/operations.md, "Workers").
MEMORY_PER_WORKER = 1024 * 1024 * 1024

#: cgroup v1 writes "no limit" as a huge number (the largest page-aligned 63-bit value).
_NO_LIMIT = 1 << 60


@dataclass(frozen=True)
class Resources:
    """What the process may use, as read from the machine; None where nothing limits it."""

    cpus: int  # CPUs the process may run on (its affinity)
    cpu_quota: float | None  # CPU time the cgroup allows, in CPUs (quota / period)
    memory_limit: int | None  # the cgroup's memory limit, bytes
    host_memory: int | None  # the machine's memory (MemTotal), bytes
    gpu_visible: bool  # an NVIDIA GPU device node is there


@dataclass(frozen=True)
class Decision:
    workers: int
    reason: str  # one line for the log: what decided the number


def decide(
    resources: Resources, device: str, memory_per_worker: int = MEMORY_PER_WORKER
) -> Decision:
    """The number of workers for ``WORKERS=auto``, with the reason (the rules: module docstring)."""
    if device == "gpu" or (device == "auto" and resources.gpu_visible):
        why = "DEVICE=gpu" if device == "gpu" else "a GPU is visible"
        return Decision(1, f"{why}: one process per GPU")
    by_cpu = resources.cpus
    reason = f"{resources.cpus} CPU{'s' if resources.cpus != 1 else ''} to run on"
    if resources.cpu_quota is not None:
        quota = max(1, math.floor(resources.cpu_quota))
        reason += f", a CPU quota of {resources.cpu_quota:g}"
        by_cpu = min(by_cpu, quota)
    memory, source = resources.memory_limit, "memory limit"
    if memory is None:
        memory, source = resources.host_memory, "machine's memory"
    workers = by_cpu
    if memory is not None:
        by_memory = memory // memory_per_worker
        reason += f", {_gib(memory)} GiB {source} at {_gib(memory_per_worker)} GiB a worker"
        workers = min(workers, by_memory)
    return Decision(max(1, workers), reason)


def read_resources(proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> Resources:
    """This process's CPUs, cgroup limits, the machine's memory and its GPU devices."""
    return Resources(
        cpus=usable_cpus(),
        cpu_quota=cgroup_cpu_quota(proc),
        memory_limit=cgroup_memory_limit(proc),
        host_memory=host_memory(proc),
        gpu_visible=any(dev.glob("nvidia[0-9]*")),
    )


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else every CPU."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(proc: Path = Path("/proc")) -> float | None:
    """The smallest CPU quota of this process's cgroup and its ancestors, in CPUs."""
    quotas: list[float] = []
    for folder in cgroup_folders("cpu", proc):
        if (cpu_max := folder / "cpu.max").is_file():  # v2: "max 100000" or "150000 100000"
            quota, _, period = _read(cpu_max).partition(" ")
            if quota != "max" and period:
                quotas.append(int(quota) / int(period))
        elif (quota_file := folder / "cpu.cfs_quota_us").is_file():  # v1: -1 for none
            quota_us = int(_read(quota_file))
            period_us = int(_read(folder / "cpu.cfs_period_us"))
            if quota_us > 0 and period_us > 0:
                quotas.append(quota_us / period_us)
    return min(quotas, default=None)


def cgroup_memory_limit(proc: Path = Path("/proc")) -> int | None:
    """The smallest memory limit of this process's cgroup and its ancestors, in bytes."""
    limits: list[int] = []
    for folder in cgroup_folders("memory", proc):
        for name in ("memory.max", "memory.limit_in_bytes"):  # v2, v1
            if (path := folder / name).is_file():
                value = _read(path)
                if value != "max" and int(value) < _NO_LIMIT:
                    limits.append(int(value))
                break
    return min(limits, default=None)


def host_memory(proc: Path = Path("/proc")) -> int | None:
    """MemTotal from ``/proc/meminfo``, in bytes; None where there is no such file."""
    try:
        lines = (proc / "meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def cgroup_folders(controller: str, proc: Path = Path("/proc")) -> list[Path]:
    """This process's cgroup folder for ``controller`` and its ancestors up to the mount point.

    ``/proc/self/cgroup`` names the process's cgroup (v2: ``0::/path``; v1:
    ``N:cpu,cpuacct:/path``) relative to the hierarchy's root, ``/proc/self/mountinfo`` where
    that hierarchy is mounted and which of its folders the mount shows (in a container, often
    its own cgroup as ``/``). A v1 hierarchy with the controller wins over the v2 one. Empty
    where there are no cgroups (not Linux, no ``/proc``).
    """
    try:
        memberships = (proc / "self" / "cgroup").read_text().splitlines()
        mounts = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return []
    paths: dict[str, str] = {}  # "v2" or the controller -> cgroup path
    for line in memberships:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            paths["v2"] = path
        elif controller in controllers.split(","):
            paths[controller] = path
    for line in mounts:
        # id parent major:minor root mount-point options [optional...] - fstype source super-options
        fields, _, tail = line.partition(" - ")
        parts, tail_parts = fields.split(), tail.split()
        if len(parts) < 5 or len(tail_parts) < 3:
            continue
        root, mount_point, fstype = parts[3], Path(parts[4]), tail_parts[0]
        if fstype == "cgroup" and controller in tail_parts[2].split(",") and controller in paths:
            return _ancestors(mount_point, root, paths[controller])
        if fstype == "cgroup2" and "v2" in paths and controller not in paths:
            return _ancestors(mount_point, root, paths["v2"])
    return []


def _ancestors(mount_point: Path, mount_root: str, cgroup_path: str) -> list[Path]:
    """The folder of ``cgroup_path`` under a mount of ``mount_root``, then its parents up to the
    mount point; just the mount point when the cgroup lies outside what the mount shows."""
    relative = os.path.relpath(cgroup_path, mount_root)
    if relative.startswith(".."):
        return [mount_point]
    folder = mount_point / relative if relative != "." else mount_point
    folders = [folder]
    while folder != mount_point:
        folder = folder.parent
        folders.append(folder)
    return folders


def _read(path: Path) -> str:
    return path.read_text().strip()


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f}"
