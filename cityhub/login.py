"""`cityhub login` and `cityhub token`: a person signs in to the hub with the city's identity (统一身份认证)
and from then on needs nothing but kubectl.

    cityhub login alice [--password-stdin]     password grant at the issuer; writes a kubeconfig whose user
                                               runs `cityhub token alice` (an exec credential plugin, the
                                               kubelogin way) and prints `export KUBECONFIG=…`
    cityhub token alice                        the ExecCredential kubectl asks for: the cached ID token, or a
                                               fresh one from the refresh token (no password again)
    cityhub people add bob --department jiaotong --role developer [--password-stdin]
                                               (the embedded default) a person in the city's identity

Tokens are short-lived (the realm's 5 minutes); the refresh token lasts the realm's SSO session. Kept in
<state>/people/<user>/ (mode 0600). Only the standard library talks to the issuer.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import getpass
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths
from cityhub.embedded_cluster.pki import write_private
from cityhub_api import people, registry

ACCEPT_TIMEOUT = 120.0
"""Seconds `cityhub login` waits for the API server to accept a new issuer's tokens."""
REFRESH_MARGIN = 30
"""Seconds before an ID token expires when `cityhub token` already fetches the next one."""


class SignInError(RuntimeError):
    """Signing in failed; the message says why and who can help."""


@dataclass(frozen=True)
class Directory:
    """What `cityhub operator start` records about the city's identity (<state>/people/issuer.json)."""

    issuer: str
    ca_file: str
    server: str
    """The API server's URL and its CA (the kubeconfig people get)."""
    server_ca: str
    identity: dict[str, str]
    """The identity type's settings (CITYHUB_IDENTITY_*: its URL, admin client and the secret's file)."""

    @classmethod
    def load(cls) -> Directory:
        file = directory_file()
        if not file.exists():
            raise SignInError(
                f"no sign-in is set up here ({file} is missing): run `cityhub operator start`, which starts "
                "the city's identity and tells the cluster to trust it"
            )
        return cls(**json.loads(file.read_text()))

    def save(self) -> Path:
        file = directory_file()
        file.parent.mkdir(parents=True, exist_ok=True)
        write_private(file, json.dumps(self.__dict__, indent=2).encode())
        return file


def directory_file() -> Path:
    return paths.state_dir() / "people" / "issuer.json"


def person_dir(user: str) -> Path:
    return paths.state_dir() / "people" / user


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _post(url: str, form: dict[str, str], ca_file: str) -> dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    context = ssl.create_default_context(cafile=ca_file or None) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return dict(json.load(resp))
    except urllib.error.HTTPError as e:
        try:
            reply = json.loads(e.read() or b"{}")
        except ValueError:
            reply = {}
        return {
            "error": reply.get("error", str(e.code)),
            "error_description": reply.get("error_description", ""),
        }
    except OSError as e:
        raise SignInError(f"the city's identity at {url} is unreachable: {e}") from e


def token_endpoint(directory: Directory) -> str:
    return f"{directory.issuer}/protocol/openid-connect/token"


def departments_of(id_token: str) -> list[tuple[str, str]]:
    """(department, role) of every department group the token's person is in."""
    found = [people.parse_group(g) for g in _claims(id_token).get("groups") or []]
    return sorted({f for f in found if f is not None})


def edge_directory(directory: Directory, edge: str) -> Directory:
    """The directory for an embedded edge cluster's API server (`cityhub cluster up --name <edge>`), which
    trusts the city's identity once its operator has started (`cityhub operator start --cluster <edge>`).
    On a city's real edge the platform team gives the edge's server with --server instead."""
    from cityhub.embedded_cluster.layout import kubeconfig_path

    admin = kubeconfig_path(edge)
    if not admin.exists():
        raise SignInError(f"no embedded cluster {edge}: `cityhub cluster up --name {edge}` makes it")
    cluster = yaml.safe_load(admin.read_text())["clusters"][0]["cluster"]
    return dataclasses.replace(
        directory, server=cluster["server"], server_ca=cluster.get("certificate-authority-data", "")
    )


def login(user: str, password: str, cluster: str | None = None) -> Path:
    """Sign `user` in; returns the kubeconfig written for them (for the edge `cluster`'s API server, when
    given: a street office signs in to its own cluster). SignInError says what is wrong."""
    directory = Directory.load()
    if cluster is not None:
        directory = edge_directory(directory, cluster)
    reply = _post(
        token_endpoint(directory),
        {
            "grant_type": "password",
            "client_id": people.CLIENT_ID,
            "username": user,
            "password": password,
            "scope": "openid",
        },
        directory.ca_file,
    )
    if "error" in reply:
        if reply["error"] == "invalid_grant":
            raise SignInError(
                f"登录失败 sign-in failed for {user}: wrong user name or password. Your department's "
                "administrator (管理员) can reset it in the city's identity (统一身份认证)."
            )
        raise SignInError(
            f"登录失败 sign-in failed for {user}: {reply['error']} {reply['error_description']}"
        )
    memberships = departments_of(reply["id_token"])
    if not memberships:
        raise SignInError(
            f"{user} signed in but belongs to no department (不属于任何部门): nobody can grant you anything "
            "in the hub. Ask your department's administrator (管理员) to add you to the department's group "
            f"(e.g. {people.idp_group('<department>', 'developer')})."
        )
    _wait_until_accepted(reply["id_token"], directory)
    _save_tokens(user, reply, directory)
    name = "kubeconfig" if cluster is None else f"kubeconfig-{cluster}"
    return _write_kubeconfig(user, directory, memberships[0][0], name)


def _accepted(token: str, directory: Directory) -> int:
    """The HTTP status of a SelfSubjectReview with `token` (201: the API server knows who it is)."""
    body = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode()
    req = urllib.request.Request(
        f"{directory.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cadata=base64.b64decode(directory.server_ca).decode())
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError as e:
        raise SignInError(f"the hub's API server at {directory.server} is unreachable: {e}") from e


def _wait_until_accepted(token: str, directory: Directory, timeout: float = ACCEPT_TIMEOUT) -> None:
    """The API server takes a moment to trust a newly configured issuer (it reloads its authentication
    configuration and fetches the issuer's keys): wait for it rather than hand out a useless kubeconfig."""
    deadline = time.monotonic() + timeout
    while (status := _accepted(token, directory)) == 401 and time.monotonic() < deadline:
        time.sleep(1)
    if status == 401:
        raise SignInError(
            f"the hub's API server at {directory.server} does not accept sign-ins from {directory.issuer}: "
            "its authentication configuration must trust that issuer (docs/department-guide.md, 平台管理员); "
            "ask the platform team"
        )


def _save_tokens(user: str, reply: dict[str, Any], directory: Directory) -> None:
    expires = int(_claims(reply["id_token"]).get("exp") or time.time() + 60)
    cache = {
        "id_token": reply["id_token"],
        "refresh_token": reply.get("refresh_token", ""),
        "expires_at": expires,
        "token_endpoint": token_endpoint(directory),
        "ca_file": directory.ca_file,
    }
    write_private(person_dir(user) / "token.json", json.dumps(cache).encode())


def _write_kubeconfig(user: str, directory: Directory, department: str, name: str = "kubeconfig") -> Path:
    cityhub = Path(sys.executable).parent / "cityhub"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "cityhub",
                "cluster": {"server": directory.server, "certificate-authority-data": directory.server_ca},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": str(cityhub) if cityhub.exists() else "cityhub",
                        "args": ["token", user],
                        "env": [{"name": "CITYHUB_STATE", "value": str(paths.state_dir())}],
                        "interactiveMode": "Never",
                        "provideClusterInfo": False,
                    }
                },
            }
        ],
        "contexts": [
            {"name": user, "context": {"cluster": "cityhub", "user": user, "namespace": f"dept-{department}"}}
        ],
        "current-context": user,
    }
    target = person_dir(user) / name
    write_private(target, yaml.safe_dump(config, sort_keys=False).encode())
    return target


def exec_credential(user: str, now: float | None = None) -> dict[str, Any]:
    """The ExecCredential for kubectl: the cached ID token, refreshed when it is (nearly) expired."""
    file = person_dir(user) / "token.json"
    if not file.exists():
        raise SignInError(f"{user} is not signed in here: run `cityhub login {user}`")
    cache = json.loads(file.read_text())
    now = time.time() if now is None else now
    if cache["expires_at"] - REFRESH_MARGIN <= now:
        reply = _post(
            cache["token_endpoint"],
            {
                "grant_type": "refresh_token",
                "client_id": people.CLIENT_ID,
                "refresh_token": cache["refresh_token"],
            },
            cache["ca_file"],
        )
        if "error" in reply or "id_token" not in reply:
            raise SignInError(
                f"{user}'s sign-in has expired or was revoked (登录已过期): run `cityhub login {user}` again"
            )
        cache.update(
            id_token=reply["id_token"],
            refresh_token=reply.get("refresh_token", cache["refresh_token"]),
            expires_at=int(_claims(reply["id_token"]).get("exp") or now + 60),
        )
        write_private(file, json.dumps(cache).encode())
    expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cache["expires_at"]))
    return {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": cache["id_token"], "expirationTimestamp": expiry},
    }


def people_module() -> Any:
    """The type that signs people in (the one whose folder has people.py)."""
    found = [t for t in registry.component_types().values() if t.has(registry.PEOPLE)]
    if len(found) != 1:
        raise SignInError(f"expected one component type with {registry.PEOPLE}.py, found {len(found)}")
    return found[0].load(registry.PEOPLE)


def _record_directory(args: argparse.Namespace) -> None:
    """What a person on a real cluster is told by the platform team: the issuer and the API server."""
    if not (args.issuer and args.server and args.server_ca_file):
        raise SignInError("--issuer, --server and --server-ca-file go together: the platform team has them")
    Directory(
        issuer=args.issuer.rstrip("/"),
        ca_file=args.issuer_ca_file or ssl.get_default_verify_paths().cafile or "",
        server=args.server.rstrip("/"),
        server_ca=base64.b64encode(Path(args.server_ca_file).read_bytes()).decode(),
        identity={},
    ).save()


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"password for {args.user}: ")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cityhub", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    login_p = sub.add_parser("login", help="sign in with the city's identity; writes a kubeconfig")
    login_p.add_argument("user")
    login_p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login_p.add_argument(
        "--cluster", help="an embedded edge cluster to sign in to (e.g. xihu-edge); default: the hub"
    )
    setup = login_p.add_argument_group(
        "a real cluster (the embedded default needs none: `cityhub operator start` records them)"
    )
    setup.add_argument("--issuer", help="the city's identity, e.g. https://id.city.gov.cn/realms/city")
    setup.add_argument("--issuer-ca-file", help="CA certificate of the issuer's TLS (default: the system's)")
    setup.add_argument("--server", help="the hub's API server, e.g. https://hub.city.gov.cn:6443")
    setup.add_argument("--server-ca-file", help="CA certificate of the API server")
    token_p = sub.add_parser("token", help="the exec credential kubectl runs (prints an ExecCredential)")
    token_p.add_argument("user")
    people_p = sub.add_parser("people", help="people of the embedded default's identity")
    people_sub = people_p.add_subparsers(dest="action", required=True)
    add = people_sub.add_parser("add", help="add a person to a department, in a role")
    add.add_argument("user")
    add.add_argument("--department", help="the department's slug, e.g. jiaotong (none: in no department)")
    add.add_argument("--role", choices=people.ROLES, default="developer")
    add.add_argument("--password-stdin", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "login":
            if args.issuer or args.server:
                _record_directory(args)
            kubeconfig = login(args.user, _password(args), args.cluster)
            print(f"signed in as {args.user}; use it with:\n  export KUBECONFIG={kubeconfig}")
        elif args.command == "token":
            print(json.dumps(exec_credential(args.user)))
        else:
            directory = Directory.load()
            people_module().add_person(
                directory.identity, args.user, _password(args), args.department, args.role
            )
            where = f"{args.department} as {args.role}" if args.department else "no department"
            print(f"{args.user}: in {where}; sign in with `cityhub login {args.user}`")
    except SignInError as e:
        print(f"cityhub: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # the people module's DirectoryError
        print(f"cityhub: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
