"""NATS keys and JWTs of the messaging driver, and the server configuration rendered from them."""

from __future__ import annotations

import base64
import hashlib
import json

import nkeys
from cityhub_operator.driver import Request
from component_types.messaging.driver import Keys, natsjwt, user_permissions
from component_types.messaging.driver.server import server_config

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
    req = Request(namespace="x", name="n", uid="1", department="x", spec={}, limits={})
    assert a.user(req) != a.user(
        Request(namespace="x", name="n", uid="2", department="x", spec={}, limits={})
    )


def test_jwt_is_signed_by_the_issuer_with_a_content_hash_id() -> None:
    keys = Keys(SECRET)
    token = natsjwt.account_jwt(keys.account("yingji"), keys.operator, "yingji", {"limits": {}})
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
    assert natsjwt.decode(token) == claims


def test_user_jwts_are_reproducible_and_scoped_to_the_department() -> None:
    keys = Keys(SECRET)
    user, account = keys.admin("jiaotong"), keys.account("jiaotong")
    pub, sub = user_permissions("jiaotong")
    one = natsjwt.user_jwt(user, account, "jiaotong/x", pub, sub, issued_at=1000)
    assert one == natsjwt.user_jwt(user, account, "jiaotong/x", pub, sub, issued_at=1000)
    claims = natsjwt.decode(one)["nats"]
    assert claims["pub"]["allow"][0] == "city.jiaotong.>" and "city.jiaotong.>" in claims["sub"]["allow"]
    assert not any(s.startswith("city.") and s != "city.jiaotong.>" for s in claims["pub"]["allow"])
    assert (
        "$JS.API.STREAM.CREATE.*" not in claims["pub"]["allow"] and "$JS.API.>" not in claims["pub"]["allow"]
    )
    creds = natsjwt.creds(one, user)
    assert one in creds and user.seed in creds and "BEGIN USER NKEY SEED" in creds


def test_server_config_trusts_the_operator_and_holds_no_seed() -> None:
    keys = Keys(SECRET)
    text = server_config(SECRET, store_dir="/data", listen="127.0.0.1:4222")
    assert f'system_account: "{keys.system_account.public}"' in text
    assert "type: full" in text and 'dir: "/data/jwt"' in text
    assert natsjwt.decode(text.split('operator: "')[1].split('"')[0])["sub"] == keys.operator.public
    assert keys.operator.seed not in text and keys.system_user.seed not in text
