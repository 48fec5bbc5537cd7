"""Department roles under Pulumi's mocks: what a department's 管理员, 开发者 and 只读 people would be allowed
to do, evaluated with Kubernetes RBAC's own matching rules on the ClusterRoles the stack declares.
tests/integration/test_isolation_roles.py asks the real API server the same questions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cityhub.config import ConfigError, load_config
from cityhub_api import people
from cityhub_api.registry import component_types
from tests.unit.test_components import Created, changed, dev_config, find, hub, of_kind, stack_raw

RBAC = "rbac.authorization.k8s.io"
HUB = "hub.cityhub.io"
Rules = list[dict[str, Any]]


def allows(rules: Rules, verb: str, resource: str, group: str = "", name: str | None = None) -> bool:
    """Whether `rules` grant `verb` on `resource` (`pods/exec` for a subresource) the way the API server's
    RBAC authorizer decides: a rule matches its API group, resource, verb and, when it lists
    resourceNames, the object's name."""
    for rule in rules:
        if (
            {group, "*"} & set(rule["apiGroups"])
            and {resource, "*"} & set(rule["resources"])
            and {verb, "*"} & set(rule["verbs"])
            and (not rule.get("resourceNames") or name in rule["resourceNames"])
        ):
            return True
    return False


@pytest.fixture(scope="module")
def dev() -> list[Created]:
    return hub(stack_raw())


@pytest.fixture(scope="module")
def roles(dev: list[Created]) -> dict[str, Rules]:
    return {
        role: find(dev, "ClusterRole", f"cityhub:department-{role}").inputs["rules"] for role in people.ROLES
    }


WORKLOADS = [
    ("", "pods"),
    ("", "services"),
    ("", "configmaps"),
    ("", "persistentvolumeclaims"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
]
NEVER = [
    # Held by the stack: zone isolation, the city's quota decisions, and new roles.
    ("create", "networking.k8s.io", "networkpolicies"),
    ("update", "", "resourcequotas"),
    ("delete", "", "limitranges"),
    ("create", RBAC, "roles"),
    ("escalate", RBAC, "roles"),
    ("escalate", RBAC, "clusterroles"),
    ("create", "", "namespaces"),
    ("create", "apps", "daemonsets"),
    ("create", HUB, "componentofferings"),
    ("impersonate", "", "users"),
]


def test_roles_are_written_out_without_wildcards(dev: list[Created], roles: dict[str, Rules]) -> None:
    for role in people.ROLES:
        cluster_role = find(dev, "ClusterRole", f"cityhub:department-{role}")
        assert "aggregationRule" not in cluster_role.inputs
        assert (
            cluster_role.inputs["metadata"]["annotations"]["cityhub.io/display-name"]
            == people.ROLE_NAMES[role]
        )
        for rule in roles[role]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], (role, rule)
        for verb, group, resource in NEVER:
            assert not allows(roles[role], verb, resource, group), f"{role} may {verb} {resource}"


def test_developer_deploys_and_mounts_secrets_but_never_reads_them(roles: dict[str, Rules]) -> None:
    developer = roles["developer"]
    for group, resource in WORKLOADS:
        for verb in ("create", "update", "delete", "get"):
            assert allows(developer, verb, resource, group), f"developer cannot {verb} {resource}"
    assert allows(developer, "patch", "deployments/scale", "apps")
    # A pod that mounts the connection Secret needs only `create pods`: RBAC does not check mounts.
    for verb in ("get", "list", "watch", "create", "update"):
        assert not allows(developer, verb, "secrets"), f"developer may {verb} secrets"
    assert allows(developer, "get", "pods/log")
    assert not allows(developer, "create", "pods/exec"), "a shell in a pod reads what it mounts"
    assert not allows(developer, "create", "rolebindings", RBAC)
    assert not allows(developer, "bind", "clusterroles", RBAC, "cityhub:department-developer")
    assert not allows(developer, "create", "serviceaccounts")


def test_viewer_reads_workloads_requests_feedback_events_and_quotas_only(roles: dict[str, Rules]) -> None:
    viewer = roles["viewer"]
    assert {v for rule in viewer for v in rule["verbs"]} == {"get", "list", "watch"}
    for group, resource in [
        *WORKLOADS,
        ("", "events"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        (HUB, "componentfeedbacks"),
        (HUB, "messagingchannels"),
    ]:
        assert allows(viewer, "list", resource, group), f"viewer cannot list {resource}"
    assert not any(allows(viewer, v, "secrets") for v in ("get", "list", "watch"))
    assert not allows(viewer, "create", "componentfeedbacks", HUB)


def test_every_request_kind_is_requested_by_developers_and_status_stays_the_operators(
    roles: dict[str, Rules],
) -> None:
    plurals = [t.plural for t in component_types().values()]
    assert "messagingchannels" in plurals
    for plural in plurals:
        for role in ("admin", "developer"):
            for verb in ("create", "get", "list", "watch", "update", "patch", "delete"):
                assert allows(roles[role], verb, plural, HUB), f"{role} cannot {verb} {plural}"
        assert allows(roles["viewer"], "get", plural, HUB)
        assert not allows(roles["viewer"], "create", plural, HUB)
        for role in people.ROLES:
            assert allows(roles[role], "get", f"{plural}/status", HUB)
            assert not allows(roles[role], "patch", f"{plural}/status", HUB)
            assert not allows(roles[role], "update", f"{plural}/status", HUB)
    for role in ("admin", "developer"):
        for verb in ("create", "get", "list", "delete"):
            assert allows(roles[role], verb, "componentfeedbacks", HUB), f"{role} cannot {verb} feedback"


def test_admin_holds_secrets_and_exec_and_binds_only_the_department_roles(roles: dict[str, Rules]) -> None:
    admin = roles["admin"]
    for verb in ("get", "list", "watch"):
        assert allows(admin, verb, "secrets"), f"admin cannot {verb} its connection Secrets"
    for sub in ("pods/exec", "pods/attach", "pods/portforward"):
        # `get` too: kubectl's WebSocket streams are authorized as a GET on the subresource.
        assert allows(admin, "create", sub) and allows(admin, "get", sub), sub
    for verb in ("create", "delete", "list"):
        assert allows(admin, verb, "rolebindings", RBAC)
    bindable = {f"cityhub:department-{r}" for r in people.ROLES}
    for name in bindable:
        assert allows(admin, "bind", "clusterroles", RBAC, name)
    for name in ("cluster-admin", "admin", "edit", "cityhub-operator", "cityhub-operator-secrets"):
        assert not allows(admin, "bind", "clusterroles", RBAC, name), f"admin may bind {name}"
    assert not allows(admin, "bind", "roles", RBAC, "component-requester")
    bind_rules = [r for r in admin if "bind" in r["verbs"]]
    assert [set(r["resourceNames"]) for r in bind_rules] == [bindable]


def test_roles_nest_viewer_in_developer_in_admin(roles: dict[str, Rules]) -> None:
    """Everything a viewer may do a developer may, and everything a developer may an admin may."""
    for smaller, larger in (("viewer", "developer"), ("developer", "admin")):
        for rule in roles[smaller]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        names = rule.get("resourceNames") or [None]
                        for name in names:
                            assert allows(roles[larger], verb, resource, group, name), (
                                f"{smaller} may {verb} {resource} but {larger} may not"
                            )


def catalog_binding(created: list[Created]) -> Created:
    return find(created, "ClusterRoleBinding", "cityhub:catalog-reader")


def test_catalog_reader_is_bound_to_every_departments_people_and_no_one_else(dev: list[Created]) -> None:
    reader = find(dev, "ClusterRole", "cityhub:catalog-reader").inputs["rules"]
    assert reader == [
        {"apiGroups": [HUB], "resources": ["componentofferings"], "verbs": ["get", "list", "watch"]}
    ]
    binding = catalog_binding(dev).inputs
    assert binding["roleRef"] == {"apiGroup": RBAC, "kind": "ClusterRole", "name": "cityhub:catalog-reader"}
    groups = {s["name"] for s in binding["subjects"] if s["kind"] == "Group"}
    users = {s["name"] for s in binding["subjects"] if s["kind"] == "User"}
    assert {s["kind"] for s in binding["subjects"]} == {"Group", "User"}
    assert groups == {
        f"oidc:cityhub-{d.slug}-{role}s"
        for d in dev_config().departments
        for role in ("admin", "developer", "viewer")
    }
    assert users == {"oidc:jt-admin", "oidc:yj-admin"}, "declared admins are a department's people too"
    assert "system:authenticated" not in groups | users


def test_declaring_an_admin_changes_only_that_departments_admin_binding_and_the_catalog_reader(
    dev: list[Created],
) -> None:
    raw = copy.deepcopy(stack_raw())
    next(d for d in raw["departments"] if d["slug"] == "chengguan")["admins"] = ["wang.wei", "li_na-2"]
    after = hub(raw)
    diff = changed(dev, after)
    assert set(diff) == {"hub-chengguan-admin", "hub-catalog-reader"}
    subjects = find(after, "RoleBinding", "cityhub:department-admin", "dept-chengguan").inputs["subjects"]
    assert [s["name"] for s in subjects] == ["oidc:cityhub-chengguan-admins", "oidc:wang.wei", "oidc:li_na-2"]
    others = find(after, "RoleBinding", "cityhub:department-admin", "dept-yingji").inputs["subjects"]
    assert "oidc:wang.wei" not in {s["name"] for s in others}


def test_each_cluster_binds_its_own_departments_to_the_catalog() -> None:
    raw = stack_raw()
    raw["clusters"] = [
        {"name": "hub"},
        {"name": "dongcheng-edge", "role": "edge", "divisionCode": "330102", "context": "dongcheng"},
    ]
    raw["departments"][4]["cluster"] = "dongcheng-edge"
    created = hub(raw)
    bindings = {
        b.name: b for b in of_kind(created, "ClusterRoleBinding") if b.k8s_name == "cityhub:catalog-reader"
    }
    edge = {s["name"] for s in bindings["dongcheng-edge-catalog-reader"].inputs["subjects"]}
    assert edge == {f"oidc:cityhub-dongcheng-yingji-{r}s" for r in ("admin", "developer", "viewer")}
    hub_subjects = {s["name"] for s in bindings["hub-catalog-reader"].inputs["subjects"]}
    assert not any("dongcheng-yingji" in s for s in hub_subjects)
    assert len([r for r in of_kind(created, "ClusterRole") if r.k8s_name == "cityhub:department-admin"]) == 2


@pytest.mark.parametrize(
    ("admins", "message"),
    [
        (["JT Admin"], '"JT Admin" must be a sign-in name (preferred_username)'),
        (["system:admin"], '"system:admin" must be a sign-in name'),
        (["-x"], '"-x" must be a sign-in name'),
        ("jt-admin", '"jt-admin" must be of type array'),
        (["jt-admin", "jt-admin"], "non-unique"),
    ],
)
def test_declared_admins_must_be_sign_in_names(admins: object, message: str) -> None:
    raw = copy.deepcopy(stack_raw())
    raw["departments"][3]["admins"] = admins
    with pytest.raises(ConfigError) as info:
        load_config(raw)
    assert "cityhub:departments[3].admins" in str(info.value) and message in str(info.value)


def test_declared_admins_reach_the_configuration() -> None:
    config = load_config(stack_raw())
    by_slug = {d.slug: d.admins for d in config.departments}
    assert by_slug["jiaotong"] == ("jt-admin",) and by_slug["yingji"] == ("yj-admin",)
    assert by_slug["chengguan"] == ()
