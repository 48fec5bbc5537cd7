"""The inference Backend under Pulumi's mocks: the gateway behind the front door in the system namespace, the
model servers' namespace fenced and granted to the operator, and settings the driver can use."""

from __future__ import annotations

from typing import Any

import pulumi

from cityhub_api import labels
from cityhub_api.registry import component_type
from component_types.inference import naming
from component_types.inference.backend import (
    DEFAULT_DENY_POLICY,
    MODEL_SERVERS_POLICY,
    OPERATOR_ROLE,
    Backend,
)
from component_types.inference.driver import InferenceSettings
from components.backends import OPERATOR_ACCOUNT, BackendArgs, derive
from tests.unit.test_components import Created, find, of_kind, run

SYSTEM, POOL = labels.SYSTEM_NAMESPACE, "cityhub-inference"
MASTER = "m" * 48
INFERENCE = component_type("inference")
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""How Pulumi's wire format marks a secret value."""


def args(pools: dict[str, str] | None = None, **settings: Any) -> BackendArgs:
    return BackendArgs(
        ctype=INFERENCE,
        namespace=SYSTEM,
        master_key=MASTER,
        operator_image="cityhub/operator:dev",
        settings=settings,
        pools={labels.GPU_POOL: POOL} if pools is None else pools,
    )


def deploy(backend_args: BackendArgs) -> tuple[list[Created], dict[str, str]]:
    env: dict[str, str] = {}

    def program() -> None:
        Backend("inference", backend_args).operator_env.apply(env.update)

    return run(program), env


def selects(selector: dict[str, str], pod_labels: dict[str, str]) -> bool:
    return selector.items() <= pod_labels.items()


def test_front_door_selects_the_gateway_in_the_system_namespace() -> None:
    created, _ = deploy(args())
    door = INFERENCE.front_door
    gateway = find(created, "Deployment", naming.GATEWAY, SYSTEM)
    template = gateway.inputs["spec"]["template"]
    pod, container = template["spec"], template["spec"]["containers"][0]
    assert selects(door.selector, template["metadata"]["labels"])  # the front door `inference` finds it
    assert selects(gateway.inputs["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
    assert [p["containerPort"] for p in container["ports"]] == [door.target_port] == [8090]
    assert container["args"][:2] == ["--listen", f"0.0.0.0:{door.target_port}"]
    assert container["image"] == "cityhub/operator:dev"
    assert container["command"] == ["python", "-m", "component_types.inference.gateway"]
    assert pod["nodeSelector"] == {labels.POOL: labels.CPU_POOL}
    assert pod["volumes"][0]["configMap"]["name"] == naming.ROUTES_CONFIGMAP
    find(created, "ConfigMap", naming.ROUTES_CONFIGMAP, SYSTEM)  # mounted from the gateway's namespace
    assert not of_kind(created, "Service")  # the stack's front door is the gateway's only Service
    assert gateway.inputs["spec"]["replicas"] == 2
    assert container["args"][-2:] == ["--replicas", "2"]  # each replica admits requestsPerMinute // 2


def test_gateway_meets_pod_security_restricted() -> None:
    created, _ = deploy(args())
    pod = find(created, "Deployment", naming.GATEWAY, SYSTEM).inputs["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def test_the_gateway_watches_its_routes_with_an_account_that_reads_only_them() -> None:
    """A route takes effect when the operator writes it, not at the kubelet's next rewrite of the mounted
    ConfigMap (up to a minute later): the gateway watches the ConfigMap with its own account, allowed that
    one ConfigMap and nothing else; the mount stays its fallback."""
    created, _ = deploy(args())
    pod = find(created, "Deployment", naming.GATEWAY, SYSTEM).inputs["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == naming.GATEWAY
    assert pod["automountServiceAccountToken"] is True
    argv = pod["containers"][0]["args"]
    assert argv[argv.index("--routes-configmap") + 1] == f"{SYSTEM}/{naming.ROUTES_CONFIGMAP}"
    assert argv[argv.index("--routes") + 1] == naming.ROUTES_MOUNT
    account = find(created, "ServiceAccount", naming.GATEWAY, SYSTEM).inputs
    assert account["automountServiceAccountToken"] is False
    assert find(created, "Role", naming.GATEWAY, SYSTEM).inputs["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [naming.ROUTES_CONFIGMAP],
            "verbs": ["get", "list", "watch"],
        }
    ]
    binding = find(created, "RoleBinding", naming.GATEWAY, SYSTEM).inputs
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": naming.GATEWAY, "namespace": SYSTEM}]
    assert binding["roleRef"]["name"] == naming.GATEWAY


def test_model_servers_namespace_denies_ingress_and_enforces_restricted() -> None:
    """The GPU pool's namespace: default-deny ingress (the gateway's policy is the only way in) and Pod
    Security `restricted` on the namespace the stack's GPU pool creates."""
    created, _ = deploy(args())
    deny = find(created, "NetworkPolicy", DEFAULT_DENY_POLICY, POOL).inputs["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    [patch] = of_kind(created, "NamespacePatch")
    assert patch.inputs["metadata"]["name"] == POOL
    assert patch.inputs["metadata"]["labels"] == {
        labels.POD_SECURITY_ENFORCE: "restricted",
        labels.POD_SECURITY_ENFORCE_VERSION: "latest",
        labels.POD_SECURITY_WARN: "restricted",
        labels.POD_SECURITY_AUDIT: "restricted",
    }


def test_model_servers_answer_only_the_gateway() -> None:
    created, _ = deploy(args())
    find(created, "PersistentVolumeClaim", naming.MODELS_PVC, POOL)
    policy = find(created, "NetworkPolicy", MODEL_SERVERS_POLICY, POOL).inputs["spec"]
    gateway_pods = find(created, "Deployment", naming.GATEWAY, SYSTEM).inputs["spec"]["template"]["metadata"]
    assert policy["podSelector"]["matchLabels"] == naming.MANAGED_LABELS
    assert not selects(policy["podSelector"]["matchLabels"], gateway_pods["labels"])
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": SYSTEM}
    assert selects(peer["podSelector"]["matchLabels"], gateway_pods["labels"])


def test_operator_may_manage_model_servers_and_routes_only() -> None:
    created, _ = deploy(args())
    role = find(created, "Role", OPERATOR_ROLE, POOL).inputs
    assert {r for rule in role["rules"] for r in rule["resources"]} >= {"deployments", "services"}
    routes = find(created, "Role", f"{OPERATOR_ROLE}-routes", SYSTEM).inputs
    assert routes["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [naming.ROUTES_CONFIGMAP],
            "verbs": ["get", "update", "patch"],
        }
    ]
    for name, namespace in ((OPERATOR_ROLE, POOL), (f"{OPERATOR_ROLE}-routes", SYSTEM)):
        binding = find(created, "RoleBinding", name, namespace).inputs
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": OPERATOR_ACCOUNT, "namespace": SYSTEM}
        ]


def test_operator_env_is_kubernetes_mode_on_the_mounted_secret() -> None:
    created, env = deploy(args())
    secret = find(created, "Secret", "cityhub-inference-backend", SYSTEM).inputs
    data = secret["stringData"]
    assert set(data) == {SECRET_SIG, "value"}  # marked secret: never shown in plain text by Pulumi
    assert data["value"] == {naming.SECRET_KEY: derive(MASTER, "inference")}
    assert env == {
        "CITYHUB_INFERENCE_MODE": "kubernetes",
        "CITYHUB_INFERENCE_NAMESPACE": POOL,
        "CITYHUB_INFERENCE_GATEWAY_URL": "http://inference.cityhub-system.svc.cluster.local:8090",
        "CITYHUB_INFERENCE_SECRET_FILE": "/var/run/cityhub/backends/inference/secret",
        "CITYHUB_INFERENCE_ROUTES_CONFIGMAP": naming.ROUTES_CONFIGMAP,
        "CITYHUB_INFERENCE_ROUTES_NAMESPACE": SYSTEM,
        "CITYHUB_INFERENCE_MODELS_PVC": naming.MODELS_PVC,
        "CITYHUB_INFERENCE_IMAGE": naming.MLSERVER_IMAGE,
    }
    settings = InferenceSettings.from_env({k: v for k, v in env.items() if not k.endswith("_SECRET_FILE")})
    assert settings.mode == "kubernetes" and settings.kubernetes.routes_namespace == SYSTEM


def test_without_a_gpu_pool_everything_stays_in_the_system_namespace() -> None:
    created, env = deploy(args(pools={}, gatewayReplicas=3, modelsSize="50Gi", mlserverImage="mlserver:x"))
    find(created, "PersistentVolumeClaim", naming.MODELS_PVC, SYSTEM)
    find(created, "NetworkPolicy", MODEL_SERVERS_POLICY, SYSTEM)
    find(created, "Role", OPERATOR_ROLE, SYSTEM)
    assert find(created, "Deployment", naming.GATEWAY, SYSTEM).inputs["spec"]["replicas"] == 3
    claim = find(created, "PersistentVolumeClaim", naming.MODELS_PVC, SYSTEM).inputs
    assert claim["spec"]["resources"]["requests"] == {"storage": "50Gi"}
    assert env["CITYHUB_INFERENCE_NAMESPACE"] == SYSTEM and env["CITYHUB_INFERENCE_IMAGE"] == "mlserver:x"
    assert "CITYHUB_INFERENCE_ROUTES_NAMESPACE" not in env
    # The system namespace hosts other backends and has its own default-deny: left as it is.
    assert not of_kind(created, "NamespacePatch")
    assert [p.k8s_name for p in of_kind(created, "NetworkPolicy")] == [MODEL_SERVERS_POLICY]


def test_pool_namespace_may_be_an_output() -> None:
    created, env = deploy(args(pools={labels.GPU_POOL: pulumi.Output.from_input(POOL)}))  # type: ignore[dict-item]
    find(created, "NetworkPolicy", MODEL_SERVERS_POLICY, POOL)
    assert env["CITYHUB_INFERENCE_NAMESPACE"] == POOL


REAL_NODE = {
    "nodeSelector": {"cityhub.io/node": "real"},
    "tolerations": [{"key": "cityhub.io/real-node", "operator": "Exists", "effect": "NoSchedule"}],
}


def test_the_models_image_fills_the_store_and_gives_the_operator_its_catalog() -> None:
    """Nothing filled the model store's volume: with modelsImage a Job copies the image's store into it as
    the model servers' user (restricted, where the model servers run), and the operator's pods get the
    catalog from the same image through an init container, the driver pointed at it."""
    image = "registry.cityhub.local/cityhub/models:0123456789ab"
    backend_args = args(modelsImage=image, modelsAccessMode="ReadWriteOnce", serverPlacement=REAL_NODE)
    pod_parts: list[Any] = []

    def program() -> None:
        backend = Backend("inference", backend_args)
        pod_parts.append(backend.operator_pod)

    created = run(program)
    [job] = of_kind(created, "Job")
    assert job.inputs["metadata"]["namespace"] == POOL  # beside the model servers, whose volume it fills
    pod = job.inputs["spec"]["template"]["spec"]
    [copy] = pod["containers"]
    assert copy["image"] == image and copy["command"] == ["cp", "-R", "/models/.", naming.MODELS_MOUNT]
    assert pod["volumes"] == [{"name": "models", "persistentVolumeClaim": {"claimName": naming.MODELS_PVC}}]
    assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"] is True
    assert copy["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["nodeSelector"] == REAL_NODE["nodeSelector"] and pod["tolerations"] == REAL_NODE["tolerations"]
    claim = find(created, "PersistentVolumeClaim", naming.MODELS_PVC, POOL).inputs
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]

    [parts] = pod_parts
    [init] = parts.init_containers
    assert init["image"] == image and init["command"][:2] == ["sh", "-c"]
    assert parts.mounts[0]["mountPath"] == naming.CATALOG_MOUNT and parts.mounts[0]["readOnly"] is True
    _, env = deploy(backend_args)
    assert env["CITYHUB_INFERENCE_MODELS_DIR"] == naming.CATALOG_MOUNT
    settings = InferenceSettings.from_env({k: v for k, v in env.items() if not k.endswith("_SECRET_FILE")})
    assert settings.kubernetes.cpu_scheduling == REAL_NODE  # CPU plans' model servers go there too


def test_without_a_models_image_nothing_is_copied_and_the_operator_is_unchanged() -> None:
    created, env = deploy(args())
    assert not of_kind(created, "Job")
    assert "CITYHUB_INFERENCE_MODELS_DIR" not in env and "CITYHUB_INFERENCE_CPU_SCHEDULING" not in env
    claim = find(created, "PersistentVolumeClaim", naming.MODELS_PVC, POOL).inputs
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]  # as before: an existing claim is not replaced


def test_the_gateway_runs_where_the_system_placement_says() -> None:
    backend_args = BackendArgs(
        ctype=INFERENCE,
        namespace=SYSTEM,
        master_key=MASTER,
        operator_image="cityhub/operator:dev",
        pools={labels.GPU_POOL: POOL},
        placement=REAL_NODE,
    )
    created, _ = deploy(backend_args)
    pod = find(created, "Deployment", naming.GATEWAY, SYSTEM).inputs["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == REAL_NODE["nodeSelector"] and pod["tolerations"] == REAL_NODE["tolerations"]


def test_a_bad_cpu_placement_names_the_variable() -> None:
    import pytest

    from cityhub_api.settings import SettingError

    bad = {"CITYHUB_INFERENCE_CPU_SCHEDULING": '{"nodeSelector": ["real"]}'}
    with pytest.raises(SettingError, match=r"Invalid CITYHUB_INFERENCE_CPU_SCHEDULING=.*nodeSelector"):
        InferenceSettings.from_env(bad)
    default = InferenceSettings.from_env({}).kubernetes.cpu_scheduling
    assert default == {"nodeSelector": {labels.POOL: labels.CPU_POOL}, "tolerations": []}
