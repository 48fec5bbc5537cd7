"""Storage tiers: StorageClasses by tier and encryption, and which of them each department may use.

On a cluster with a CSI provisioner (`storage.mode: dynamic`) each class names it and volumes are created
on demand. On a cluster without one, such as the embedded kwok cluster (`storage.mode: preprovisioned`),
classes use `kubernetes.io/no-provisioner` with Immediate binding and the stack creates hostPath
PersistentVolumes per class, so the controller manager's binder gives a claim a volume at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from cityhub.config_model import GRADE_LABELS, Department, Mode, Storage, StorageClassSpec
from cityhub_api import labels

NO_PROVISIONER = "kubernetes.io/no-provisioner"


def class_labels(spec: StorageClassSpec) -> dict[str, str]:
    return {
        **labels.common(),
        "cityhub.io/tier": spec.tier,
        "cityhub.io/encrypted": str(spec.encrypted).lower(),
        "cityhub.io/max-grade": GRADE_LABELS[spec.max_grade],
    }


def storage_hard(dept: Department, mode: Mode, storage: Storage) -> dict[str, str]:
    """The department's storage quota: its total capacity, and zero on every class its grade may not use.

    Kubernetes quota per StorageClass is the admission-time check that a core-data department cannot
    claim an unencrypted volume, whatever class its claim names (or the default class picks).
    """
    hard = {"requests.storage": dept.quota_for(mode).storage}
    for spec in storage.classes:
        if not spec.allows(dept.data_grade):
            hard[f"{spec.name}.storageclass.storage.k8s.io/requests.storage"] = "0"
            hard[f"{spec.name}.storageclass.storage.k8s.io/persistentvolumeclaims"] = "0"
    return hard


def allowed_classes(dept: Department, storage: Storage) -> list[str]:
    return [s.name for s in storage.classes if s.allows(dept.data_grade)]


@dataclass(frozen=True)
class StorageTiersArgs:
    storage: Storage
    departments: tuple[Department, ...]
    namespaces: dict[str, pulumi.Input[str]]
    """Department slug -> its namespace (from DepartmentTenancy)."""
    mode: Mode = "normal"


class StorageTiers(pulumi.ComponentResource):
    """One StorageClass per configured class (labelled with tier, encryption and the highest data grade it
    may hold), pre-provisioned volumes where the cluster has no provisioner, and per department a storage
    ResourceQuota that sets its capacity and closes the classes its data grade may not use."""

    def __init__(self, name: str, args: StorageTiersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cityhub:storage:StorageTiers", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        pre = args.storage.mode == "preprovisioned"
        for spec in args.storage.classes:
            annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if spec.default else {}
            storage_class = k8s.storage.v1.StorageClass(
                f"{name}-{spec.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=spec.name, labels=class_labels(spec), annotations=annotations
                ),
                provisioner=NO_PROVISIONER if pre else spec.provisioner,
                parameters=None if pre else (spec.parameters or None),
                # Without a provisioner nothing would ever wake a WaitForFirstConsumer claim on kwok nodes;
                # with one, waiting for the pod lets the volume follow the pod's topology.
                volume_binding_mode="Immediate" if pre else "WaitForFirstConsumer",
                reclaim_policy="Retain" if pre else "Delete",
                allow_volume_expansion=not pre,
                opts=child,
            )
            if pre:
                for i in range(args.storage.volumes_per_class):
                    volume = f"{spec.name}-{i:03d}"
                    k8s.core.v1.PersistentVolume(
                        f"{name}-{volume}",
                        metadata=k8s.meta.v1.ObjectMetaArgs(name=volume, labels=class_labels(spec)),
                        spec=k8s.core.v1.PersistentVolumeSpecArgs(
                            storage_class_name=storage_class.metadata.name,
                            capacity={"storage": args.storage.volume_size},
                            access_modes=["ReadWriteOnce"],
                            persistent_volume_reclaim_policy="Retain",
                            host_path=k8s.core.v1.HostPathVolumeSourceArgs(
                                path=f"{args.storage.host_path_root}/{volume}", type="DirectoryOrCreate"
                            ),
                        ),
                        opts=child,
                    )
        self.allowed = {d.slug: allowed_classes(d, args.storage) for d in args.departments}
        for dept in args.departments:
            k8s.core.v1.ResourceQuota(
                f"{name}-{dept.slug}-storage",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name="storage", namespace=args.namespaces[dept.slug], labels=labels.common()
                ),
                spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=storage_hard(dept, args.mode, args.storage)),
                opts=child,
            )
        self.register_outputs({"allowed": self.allowed})
