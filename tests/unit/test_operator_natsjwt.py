"""NATS keys and JWTs (cityhub_nats), the messaging names built on them, and the server configuration."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import nkeys
import pytest
import yaml

from cityhub_api import units
from cityhub_api.settings import SettingError
from cityhub_nats import jwt
from cityhub_nats.keys import Keys
from cityhub_nats.renewal import Lifetime
from cityhub_nats.server_config import server_config
from component_types.messaging import backend, naming
from component_types.messaging.driver import shares
from component_types.messaging.driver.revocations import PERMANENT, revoke, tidy
from component_types.messaging.driver.settings import DepartmentLimits, NatsSettings
from component_types.messaging.naming import user_label, user_permissions

SECRET = b"unit-test-secret-0123456789abcdefghijklmnopqrstuv"
DAY = 86400
MESSAGING = Path(__file__).resolve().parents[2] / "component_types" / "messaging"


def parts(token: str) -> tuple[dict, dict, bytes]:
    h, p, s = token.split(".")
    pad = lambda t: t + "=" * (-len(t) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(h))),
        json.loads(base64.urlsafe_b64decode(pad(p))),
        base64.urlsafe_b64decode(pad(s)),
    )


def test_keys_are_derived_deterministically_with_the_right_prefixes() -> None:
    a, b = Keys(SECRET), Keys(SECRET)
    assert a.operator == b.operator and a.account("jiaotong") == b.account("jiaotong")
    assert a.operator.public.startswith("O") and a.account("x").public.startswith("A")
    assert a.admin("x").public.startswith("U") and a.account("x") != a.account("y")
    assert Keys(b"another-secret-0123456789abcdefghijklmnop").operator != a.operator
    # A request made again under the same name (a new uid) gets a new user.
    assert a.user(user_label("x", "n", "1")) == b.user(user_label("x", "n", "1"))
    assert a.user(user_label("x", "n", "1")) != a.user(user_label("x", "n", "2"))


def test_jwt_is_signed_by_the_issuer_with_a_content_hash_id() -> None:
    keys = Keys(SECRET)
    token = jwt.account_jwt(keys.account("yingji"), keys.operator, "yingji", {"limits": {}})
    header, claims, signature = parts(token)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert claims["iss"] == keys.operator.public and claims["sub"] == keys.account("yingji").public
    assert claims["nats"]["type"] == "account" and claims["nats"]["version"] == 2
    without = {k: v for k, v in claims.items() if k != "jti"}
    digest = hashlib.new("sha512_256", json.dumps(without, separators=(",", ":")).encode()).digest()
    assert claims["jti"] == base64.b32encode(digest).rstrip(b"=").decode()
    signing_input = token.rsplit(".", 1)[0].encode()
    verifier = nkeys.from_seed(keys.operator.seed.encode())
    assert verifier.verify(signing_input, signature)
    assert jwt.decode(token) == claims


def test_user_jwts_are_reproducible_and_scoped_to_the_department() -> None:
    keys = Keys(SECRET)
    user, account = keys.admin("jiaotong"), keys.account("jiaotong")
    pub, sub = user_permissions("jiaotong")
    one = jwt.user_jwt(user, account, "jiaotong/x", pub, sub, issued_at=1000)
    assert one == jwt.user_jwt(user, account, "jiaotong/x", pub, sub, issued_at=1000)
    claims = jwt.decode(one)["nats"]
    assert claims["pub"]["allow"][0] == "city.jiaotong.>" and "city.jiaotong.>" in claims["sub"]["allow"]
    assert not any(s.startswith("city.") and s != "city.jiaotong.>" for s in claims["pub"]["allow"])
    assert (
        "$JS.API.STREAM.CREATE.*" not in claims["pub"]["allow"] and "$JS.API.>" not in claims["pub"]["allow"]
    )
    creds = jwt.creds(one, user)
    assert one in creds and user.seed in creds and "BEGIN USER NKEY SEED" in creds


def test_server_config_trusts_the_operator_and_holds_no_seed() -> None:
    keys = Keys(SECRET)
    text = server_config(SECRET, store_dir="/data", listen="127.0.0.1:4222")
    assert f'system_account: "{keys.system_account.public}"' in text
    assert "type: full" in text and 'dir: "/data/jwt"' in text
    assert jwt.decode(text.split('operator: "')[1].split('"')[0])["sub"] == keys.operator.public
    assert keys.operator.seed not in text and keys.system_user.seed not in text
    assert "mqtt" not in text and "max_payload" not in text


def test_server_config_is_identical_on_every_render() -> None:
    # Rendered into a ConfigMap by `pulumi up`: a second run must change nothing.
    assert server_config(SECRET, store_dir="/data") == server_config(SECRET, store_dir="/data")


def test_server_config_can_listen_for_mqtt_with_a_payload_limit() -> None:
    text = server_config(SECRET, store_dir="/d", mqtt_listen="0.0.0.0:1883", max_payload="256KB")
    assert 'mqtt {\n  listen: "0.0.0.0:1883"\n}' in text and "max_payload: 256KB" in text
    # Another type's master secret gives another trust root.
    other = server_config(b"sensing-secret-0123456789abcdefghijklmnop", store_dir="/d")
    assert other.split('operator: "')[1] != text.split('operator: "')[1]


def test_credentials_expire_and_are_the_same_within_a_renewal_period() -> None:
    lifetime = Lifetime(30 * DAY)
    created = 1_700_000_000
    first = lifetime.window(created, created + 5)
    assert first == (created, created + 30 * DAY)
    assert lifetime.window(created, created + 10 * DAY - 1) == first  # same token: byte-identical Secret
    renewed = lifetime.window(created, created + 10 * DAY)
    assert renewed == (created + 10 * DAY, created + 40 * DAY)
    for now in range(created, created + 90 * DAY, 3 * 3600):  # the token in force has 2/3 of its life left
        issued, expires = lifetime.window(created, now)
        assert issued <= now and expires - now > 20 * DAY - 1
    keys = Keys(SECRET)
    user, account = keys.user("d/n/u"), keys.account("d")
    token = jwt.user_jwt(
        user, account, "d/n", {"allow": []}, {"allow": []}, issued_at=first[0], expires_at=first[1]
    )
    assert jwt.expiry(token) == first[1] and jwt.decode(token)["iat"] == first[0]
    assert jwt.expiry(jwt.user_jwt(user, account, "d/n", {}, {})) is None
    activation = jwt.activation_jwt(account, keys.account("r").public, "city.d.n.>", "d/n", expires_at=5)
    assert jwt.expiry(activation) == 5


def test_revocations_are_pruned_once_every_token_they_refuse_has_expired() -> None:
    lifetime = Lifetime(30 * DAY)
    now = 1_800_000_000
    revocations = {"old": now - 30 * DAY - 1, "recent": now - 29 * DAY, "*": 1}
    assert lifetime.prune(revocations, now) == {"recent": now - 29 * DAY, "*": 1}
    claims = {
        "revocations": dict(revocations),
        "exports": [{"name": "channel/x", "revocations": {"old": now - 31 * DAY}}, {"name": "channel/y"}],
        "imports": [
            {
                "name": "a/live",
                "token": jwt.activation_jwt(
                    Keys(SECRET).account("a"), "B", "s", "a/live", expires_at=now + 1
                ),
            },
            {
                "name": "a/dead",
                "token": jwt.activation_jwt(Keys(SECRET).account("a"), "B", "s", "a/dead", expires_at=now),
            },
        ],
    }
    tidy(claims, now, lifetime)
    assert claims["description"] == f"cityhub: channel credentials expire since {now}"
    assert claims["revocations"] == {"recent": now - 29 * DAY, "*": 1}
    assert all("revocations" not in e for e in claims["exports"])
    assert [i["name"] for i in claims["imports"]] == ["a/live"]  # an expired activation delivers nothing


def test_a_reader_receives_a_bounded_number_of_shares() -> None:
    keys = Keys(SECRET)
    limits = DepartmentLimits(shares=4, shares_per_source=2)
    window = (1_700_000_000, 1_700_000_000 + 30 * DAY)
    now = window[0] + 1
    held = [shares.import_entry(keys, "a", f"c{i}", "b", window) for i in range(2)]
    third = shares.import_entry(keys, "a", "c2", "b", window)
    refused = shares.refusal(limits, "b", held, third, "a", now)
    assert refused is not None and refused.reason == "TooManyShares"
    assert "department b already receives 2 channels from a" in str(refused)
    assert shares.refusal(limits, "b", held, held[0], "a", now) is None  # renewing one it holds
    held += [shares.import_entry(keys, "c", f"c{i}", "b", window) for i in range(2)]
    other = shares.import_entry(keys, "d", "c0", "b", window)
    assert "already receives 4 shared channels" in str(shares.refusal(limits, "b", held, other, "d", now))
    # Expired ones hold no place.
    assert shares.refusal(limits, "b", held, other, "d", window[1]) is None


def test_no_two_requests_share_a_nats_name() -> None:
    """A namespace and a name hold only [a-z0-9-]; NATS names join them with `.` or `/`, never `-`."""
    keys = Keys(SECRET)
    pairs = [
        ("dept-x", "y-z"),
        ("dept-x-y", "z"),
        ("dept-x", "y"),
        ("dept", "x-y-z"),
        ("a", "alerts"),
        ("b", "alerts"),
    ]
    for name_of in (
        naming.channel_wildcard,
        naming.import_name,
        naming.shared_subject,
        naming.probe_subject,
        lambda d, n: keys.user(user_label(d, n, "uid")).public,
        lambda d, n: (keys.account(d).public, n),  # a stream is named n in its department's account
    ):
        names = [name_of(d, n) for d, n in pairs]
        assert len(set(names)) == len(pairs), names
    # The probe's subjects are no channel's: a channel's name cannot start with `_`.
    assert naming.probe_subject("d", "x").startswith("city.d._cityhub.")


def test_department_limits_from_settings_and_the_catalog_fits_them() -> None:
    env = {
        "CITYHUB_NATS_URL": "nats://127.0.0.1:4222",
        "CITYHUB_NATS_SECRET": SECRET.decode(),
        "CITYHUB_NATS_ACCOUNT_FILE_STORE": "2Gi",
        "CITYHUB_NATS_ACCOUNT_IMPORTS": "7",
        "CITYHUB_NATS_CREDENTIALS_LIFETIME": "12h",
    }
    settings = NatsSettings.from_env(env)
    assert settings.limits.file_store == 2 * 2**30 and settings.limits.shares == 7
    assert settings.credentials_lifetime == 12 * 3600 and settings.lifetime.period == 4 * 3600
    account = settings.limits.account(10, 0)
    assert (
        account["disk_storage"],
        account["leaf"],
        account["disallow_bearer"],
        account["max_bytes_required"],
    ) == (
        10,
        0,
        True,
        True,
    )
    for name, value in (
        ("CITYHUB_NATS_ACCOUNT_FILE_STORE", "8 GB"),
        ("CITYHUB_NATS_CREDENTIALS_LIFETIME", "1s"),
        ("CITYHUB_NATS_ACCOUNT_CONNECTIONS", "1"),
    ):
        with pytest.raises(SettingError, match=f"Invalid {name}={value}: needs to be"):
            NatsSettings.from_env({**env, name: value})
    # Every plan fits one department's default store, which fits the server's default store.
    server = int(backend.MAX_FILE_STORE.removesuffix("G")) * 2**30
    catalog = yaml.safe_load((MESSAGING / "catalog.yaml").read_text())
    for plan in catalog["spec"]["plans"]:
        assert units.parse("quantity", plan["limits"]["maxBytes"]) <= DepartmentLimits().file_store < server
    assert backend.driver_settings({"departmentLimits": {"fileStore": "1Gi", "shares": 3}}) == {
        "CITYHUB_NATS_ACCOUNT_FILE_STORE": "1Gi",
        "CITYHUB_NATS_ACCOUNT_IMPORTS": "3",
    }


def test_a_user_that_may_hold_a_token_without_expiry_is_revoked_for_good() -> None:
    """Credentials an earlier operator issued carry no `exp`: their revocation must never be pruned."""
    lifetime, since = Lifetime(30 * DAY), 1_800_000_000
    claims: dict = {"description": f"cityhub: channel credentials expire since {since}"}
    revoke("UOLD", since - 1, since + 10, lifetime)(claims)
    revoke("UNEW", since + 5, since + 10, lifetime)(claims)
    assert claims["revocations"] == {"UOLD": PERMANENT, "UNEW": since + 10}
    tidy(claims, since + 10 + 30 * DAY + 1, lifetime)
    assert claims["revocations"] == {"UOLD": PERMANENT}
    unmarked: dict = {"revocations": {}}  # an account from before: everything in it may be without expiry
    revoke("U", since, since + 60, lifetime)(unmarked)
    assert unmarked["revocations"] == {"U": PERMANENT}
