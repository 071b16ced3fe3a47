"""WORKERS=auto (app/workers.py): the rule on made-up machines, the readers on fake /proc, cgroup
and /dev folders, and the setting itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.workers import (
    Resources,
    cgroup_cpu_quota,
    cgroup_folders,
    cgroup_memory_limit,
    decide,
    host_memory,
    read_resources,
)

GIB = 1024**3
V1_NO_LIMIT = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def machine(
    cpus: int = 8,
    cpu_quota: float | None = None,
    memory_limit: int | None = None,
    host_memory: int | None = 64 * GIB,
    gpu_visible: bool = False,
) -> Resources:
    return Resources(cpus, cpu_quota, memory_limit, host_memory, gpu_visible)


# ---------------------------------------------------------------------------------------------
# The rule


@pytest.mark.parametrize(
    ("resources", "workers"),
    [
        (machine(cpus=8), 8),
        (machine(cpus=1), 1),
        (machine(cpus=2, host_memory=None), 2),  # nothing known about memory: CPUs decide
        (machine(cpus=8, cpu_quota=2.0), 2),
        (machine(cpus=8, cpu_quota=2.5), 2),  # whole CPUs of the quota
        (machine(cpus=8, cpu_quota=0.5), 1),  # at least one
        (machine(cpus=2, cpu_quota=4.0), 2),  # the affinity is smaller than the quota
        (machine(cpus=8, memory_limit=3 * GIB), 3),  # memory caps it
        (machine(cpus=8, memory_limit=GIB // 2), 1),  # at least one
        (machine(cpus=8, memory_limit=None, host_memory=2 * GIB), 2),  # no limit: the machine's
        (machine(cpus=4, cpu_quota=3.0, memory_limit=16 * GIB), 3),
    ],
)
def test_a_worker_per_usable_cpu_capped_by_memory(resources: Resources, workers: int) -> None:
    decision = decide(resources, device="auto", memory_per_worker=GIB)
    assert decision.workers == workers, decision.reason


def test_one_process_per_gpu() -> None:
    on_gpu = machine(cpus=16, gpu_visible=True)
    assert decide(on_gpu, device="gpu").workers == 1
    assert decide(on_gpu, device="auto").workers == 1
    assert decide(machine(cpus=16), device="gpu").workers == 1  # start-up then fails loudly
    assert decide(on_gpu, device="cpu").workers == 16  # a GPU the service does not use


def test_the_reason_names_what_decided() -> None:
    reason = decide(machine(cpus=8, cpu_quota=2.5, memory_limit=4 * GIB), "auto", GIB).reason
    assert "8 CPUs" in reason
    assert "quota of 2.5" in reason
    assert "4.0 GiB memory limit" in reason
    assert "GPU" in decide(machine(gpu_visible=True), "auto").reason


# ---------------------------------------------------------------------------------------------
# The readers, on fake files


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str], meminfo: str = "") -> Path:
    """A /proc with self/cgroup, self/mountinfo and meminfo."""
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "mountinfo").write_text("".join(line + "\n" for line in mounts))
    if meminfo:
        (proc / "meminfo").write_text(meminfo)
    return proc


def write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("_", ".", 1)).write_text(text + "\n")


def v2_mount(point: Path, root: str = "/") -> str:
    return f"35 24 0:30 {root} {point} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"


def v1_mount(point: Path, controllers: str, root: str = "/") -> str:
    return f"40 31 0:35 {root} {point} rw,nosuid - cgroup cgroup rw,{controllers}"


def test_cgroup_v2_takes_the_smallest_limit_up_the_tree(tmp_path: Path) -> None:
    fs = tmp_path / "sys/fs/cgroup"
    proc = fake_proc(tmp_path, "0::/kubepods/pod1/ctr\n", [v2_mount(fs)])
    write(fs / "kubepods", cpu_max="400000 100000", memory_max="max")
    write(fs / "kubepods/pod1", cpu_max="max 100000", memory_max=str(2 * GIB))
    write(fs / "kubepods/pod1/ctr", cpu_max="150000 100000", memory_max=str(3 * GIB))
    assert cgroup_folders("cpu", proc)[:2] == [fs / "kubepods/pod1/ctr", fs / "kubepods/pod1"]
    assert cgroup_folders("cpu", proc)[-1] == fs
    assert cgroup_cpu_quota(proc) == 1.5
    assert cgroup_memory_limit(proc) == 2 * GIB


def test_cgroup_v2_in_its_own_namespace(tmp_path: Path) -> None:
    """A container with a cgroup namespace: its cgroup is "/", the mount's root."""
    fs = tmp_path / "sys/fs/cgroup"
    proc = fake_proc(tmp_path, "0::/\n", [v2_mount(fs)])
    write(fs, cpu_max="200000 100000", memory_max=str(GIB))
    assert cgroup_folders("memory", proc) == [fs]
    assert cgroup_cpu_quota(proc) == 2.0
    assert cgroup_memory_limit(proc) == GIB


def test_cgroup_v2_without_limits(tmp_path: Path) -> None:
    fs = tmp_path / "sys/fs/cgroup"
    proc = fake_proc(tmp_path, "0::/user.slice\n", [v2_mount(fs)])
    write(fs / "user.slice", cpu_max="max 100000", memory_max="max")
    assert cgroup_cpu_quota(proc) is None
    assert cgroup_memory_limit(proc) is None


def test_cgroup_v1_mounted_at_the_containers_own_cgroup(tmp_path: Path) -> None:
    """Docker without a cgroup namespace: /proc/self/cgroup names /docker/<id>, and the mount
    shows that folder as its root."""
    cpu, memory = tmp_path / "cgroup/cpu,cpuacct", tmp_path / "cgroup/memory"
    cgroup = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    mounts = [
        v1_mount(cpu, "cpu,cpuacct", "/docker/abc"),
        v1_mount(memory, "memory", "/docker/abc"),
    ]
    proc = fake_proc(tmp_path, cgroup, mounts)
    write(cpu, cpu_cfs_quota_us="250000", cpu_cfs_period_us="100000")
    write(memory, memory_limit_in_bytes=str(6 * GIB))
    assert cgroup_folders("cpu", proc) == [cpu]
    assert cgroup_cpu_quota(proc) == 2.5
    assert cgroup_memory_limit(proc) == 6 * GIB


def test_cgroup_v1_without_limits_on_a_hybrid_host(tmp_path: Path) -> None:
    """v1 controllers beside an empty v2 hierarchy (as some CI hosts have): v1 wins."""
    cpu, memory = tmp_path / "cgroup/cpu", tmp_path / "cgroup/memory"
    unified = tmp_path / "cgroup/unified"
    cgroup = "4:memory:/process_api/x\n1:cpu:/\n0::/\n"
    mounts = [v2_mount(unified), v1_mount(cpu, "cpu"), v1_mount(memory, "memory")]
    proc = fake_proc(tmp_path, cgroup, mounts)
    write(cpu, cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    write(memory, memory_limit_in_bytes=V1_NO_LIMIT)
    write(memory / "process_api", memory_limit_in_bytes=V1_NO_LIMIT)
    write(memory / "process_api/x", memory_limit_in_bytes=V1_NO_LIMIT)
    write(unified, cpu_max="100000 100000", memory_max=str(GIB))  # not this process's limits
    assert cgroup_folders("memory", proc) == [
        memory / "process_api/x",
        memory / "process_api",
        memory,
    ]
    assert cgroup_cpu_quota(proc) is None
    assert cgroup_memory_limit(proc) is None


def test_a_cgroup_outside_the_mount_reads_the_mount_itself(tmp_path: Path) -> None:
    fs = tmp_path / "sys/fs/cgroup"
    proc = fake_proc(tmp_path, "0::/../../elsewhere\n", [v2_mount(fs, root="/ctr")])
    write(fs, memory_max=str(GIB))
    assert cgroup_folders("memory", proc) == [fs]
    assert cgroup_memory_limit(proc) == GIB


def test_no_cgroups_no_limits(tmp_path: Path) -> None:
    assert cgroup_folders("cpu", tmp_path / "nothing") == []
    assert cgroup_cpu_quota(tmp_path / "nothing") is None
    assert cgroup_memory_limit(tmp_path / "nothing") is None
    assert host_memory(tmp_path / "nothing") is None


def test_read_resources_from_fake_files(tmp_path: Path) -> None:
    fs = tmp_path / "sys/fs/cgroup"
    meminfo = "MemTotal:       24683584 kB\nMemFree:        1000 kB\n"
    proc = fake_proc(tmp_path, "0::/\n", [v2_mount(fs)], meminfo)
    write(fs, cpu_max="300000 100000", memory_max=str(5 * GIB))
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "nvidiactl").touch()  # the driver's control node is not a GPU
    resources = read_resources(proc, dev)
    assert resources.cpu_quota == 3.0
    assert resources.memory_limit == 5 * GIB
    assert resources.host_memory == 24683584 * 1024
    assert resources.cpus >= 1
    assert not resources.gpu_visible
    (dev / "nvidia0").touch()
    assert read_resources(proc, dev).gpu_visible


# ---------------------------------------------------------------------------------------------
# The setting


@pytest.mark.parametrize(("value", "parsed"), [("auto", "auto"), ("1", 1), ("12", 12)])
def test_workers_setting_takes_auto_or_a_positive_integer(value: str, parsed: object) -> None:
    assert Settings(_env_file=None, workers=value).workers == parsed


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "many", "AUTO", ""])
def test_workers_setting_refuses_anything_else(value: str) -> None:
    with pytest.raises(ValidationError, match="workers"):
        Settings(_env_file=None, workers=value)
