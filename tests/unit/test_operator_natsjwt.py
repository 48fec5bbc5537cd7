"""NATS keys and JWTs (cityhub_nats), the messaging names built on them, and the server configuration."""

from __future__ import annotations

import base64
import hashlib
import json

import nkeys

from cityhub_nats import jwt
from cityhub_nats.keys import Keys
from cityhub_nats.server_config import server_config
from component_types.messaging.naming import user_label, user_permissions

SECRET = b"unit-test-secret-0123456789abcdefghijklmnopqrstuv"


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
