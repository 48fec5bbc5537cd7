"""A department's quota for inference: what its endpoints may reserve together, and the check.

Model servers run outside the department's namespace (the GPU pool's or the system namespace), so the
department's ResourceQuota never sees them: the driver enforces it. For each resource the stack gives a
department in its namespace's ResourceQuota `compute` (any quota of the namespace counts; the smallest
remainder wins):

    requests.nvidia.com/gpu   spec.replicas x spec.limits.gpu          no quota: 0 GPUs
    requests.cpu              spec.replicas x 250m (each replica)      no quota: not limited
    requests.memory           spec.replicas x spec.limits.memory       no quota: not limited

summed over all the department's endpoints (their model servers as they exist: `Mode.usage`) must fit what
is left of the quota after the department's own pods (status.used). The embedded mode counts the same
replicas x requests although its shared server ignores replicas: a request is judged the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from cityhub_operator.driver import PermanentBackendError, Request

CPU_REQUEST_MILLIS = 250
"""CPU each model server replica requests (kubernetes mode)."""
GPU_KEYS = ("requests.nvidia.com/gpu", "limits.nvidia.com/gpu")
CPU_KEYS = ("requests.cpu", "cpu")
MEMORY_KEYS = ("requests.memory", "memory")


@dataclass(frozen=True)
class Resources:
    """What model servers reserve: GPUs, CPU in millicores, memory in bytes."""

    gpu: int = 0
    cpu_millis: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.gpu + other.gpu, self.cpu_millis + other.cpu_millis, self.memory + other.memory)

    def times(self, n: int) -> Resources:
        return Resources(self.gpu * n, self.cpu_millis * n, self.memory * n)


@dataclass(frozen=True)
class Allowance:
    """One resource of a department's quota: the hard limit and what its own pods use (None: no quota)."""

    hard: int
    used: int = 0


@dataclass(frozen=True)
class DepartmentQuota:
    """A department's quota for model servers; None: the namespace sets no quota on that resource."""

    gpu: Allowance | None
    cpu_millis: Allowance | None
    memory: Allowance | None


def human_bytes(n: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    if n >= 2**20:
        return f"{n / 2**30:.2f}Gi" if n >= 2**30 else f"{n / 2**20:.1f}Mi"
    return str(n)


def _shortfall(wanted: int, allowance: Allowance | None, others: int) -> tuple[int, Allowance] | None:
    """(What is left, never below 0; the allowance) when `wanted` exceeds what is left of the allowance after
    the department's own pods and its other endpoints; None when it fits, nothing is wanted or the namespace
    sets no quota on the resource."""
    if allowance is None or not wanted:
        return None
    left = allowance.hard - allowance.used - others
    return (max(left, 0), allowance) if wanted > left else None


def check(
    request: Request, replicas: int, each: Resources, others: Resources, quota: DepartmentQuota
) -> None:
    """PermanentBackendError when the request's model servers do not fit the department's quota."""
    dept = request.department
    hint = (
        "lower spec.replicas or the limits, delete another of the department's endpoints, or ask for a "
        f"larger quota for department {dept}"
    )
    wanted = each.times(replicas)
    # As the table above says: no GPU quota is 0 GPUs; no CPU or memory quota is no limit.
    if over := _shortfall(wanted.gpu, quota.gpu or Allowance(0), others.gpu):
        left, q = over
        raise PermanentBackendError(
            "OverGpuQuota",
            f"spec.replicas x spec.limits.gpu = {replicas} x {each.gpu} = {wanted.gpu} GPUs exceeds what "
            f"is left of department {dept}'s GPU quota: {left} of {q.hard} "
            f"(requests.nvidia.com/gpu; {q.used} used by its pods, {others.gpu} by its other inference "
            f"endpoints): {hint}, or choose a CPU plan (cpu-small, cpu-standard)",
        )
    if over := _shortfall(wanted.cpu_millis, quota.cpu_millis, others.cpu_millis):
        left, q = over
        raise PermanentBackendError(
            "OverCpuQuota",
            f"spec.replicas x {each.cpu_millis}m CPU (each model server replica) = {wanted.cpu_millis}m "
            f"exceeds what is left of department {dept}'s CPU quota: {left}m of {q.hard}m "
            f"(requests.cpu; {q.used}m used by its pods, {others.cpu_millis}m by its other inference "
            f"endpoints): {hint}",
        )
    if over := _shortfall(wanted.memory, quota.memory, others.memory):
        left, q = over
        raise PermanentBackendError(
            "OverMemoryQuota",
            f"spec.replicas x spec.limits.memory = {replicas} x {human_bytes(each.memory)} = "
            f"{human_bytes(wanted.memory)} exceeds what is left of department {dept}'s memory quota: "
            f"{human_bytes(left)} of {human_bytes(q.hard)} (requests.memory; "
            f"{human_bytes(q.used)} used by its pods, {human_bytes(others.memory)} by its other "
            f"inference endpoints): {hint}",
        )
