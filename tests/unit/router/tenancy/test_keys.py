"""KeyRing: a request's bearer key to its tenant - scopes, models (ids, aliases, globs), reload."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from inference_service.config import Settings
from inference_service.config.keys import KeyConfig
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.keys import KeyRing

MODELS = {
    "qwen2.5-7b": {"path": "q.gguf", "aliases": ["qwen"]},
    "embed-small": {"path": "e.gguf"},
    "embed-large": {"path": "f.gguf"},
    "gemma": {"path": "g.gguf"},
}


def ring(**settings: Any) -> KeyRing:
    return KeyRing(Settings(models=MODELS, **settings))


def bearer(secret: str) -> bytes:
    return f"Bearer {secret}".encode()


BATCH = {"key": "b-secret", "scopes": ["inference"], "models": ["qwen", "embed-*"]}


def test_a_configured_key_is_its_tenant_with_its_scopes() -> None:
    tenant = ring(keys={"batch": BATCH}).authenticate(bearer("b-secret"))
    assert tenant is not None and (tenant.name, tenant.scopes) == ("batch", {"inference"})


@pytest.mark.parametrize("header", [b"Bearer wrong", b"Basic b-secret", b"b-secret", b""])
def test_anything_but_the_bearer_key_is_nobody(header: bytes) -> None:
    assert ring(keys={"batch": BATCH}).authenticate(header) is None


@pytest.mark.parametrize("header", [b"Bearer", b"Bearer ", b"Bearer   "])
def test_a_bearer_without_a_secret_is_nobody_even_against_the_empty_strings_digest(header: bytes) -> None:
    """The config refuses that digest; should one slip past it, an empty token still names no key."""
    empty = KeyConfig.model_construct(name="ops", sha256=hashlib.sha256(b"").hexdigest(), scopes=["admin"])
    settings = Settings.model_construct(models={}, keys={"ops": empty}, api_key=None)
    assert KeyRing(settings).authenticate(header) is None


def test_the_scheme_is_case_insensitive_and_the_key_is_not() -> None:
    keyring = ring(keys={"batch": BATCH})
    assert keyring.authenticate(b"bEaReR b-secret") is not None
    assert keyring.authenticate(b"Bearer B-SECRET") is None


def test_a_key_kept_as_its_digest_is_found_by_its_secret() -> None:
    digest = hashlib.sha256(b"ops-secret").hexdigest()
    tenant = ring(keys={"ops": {"sha256": digest, "scopes": ["admin"]}}).authenticate(bearer("ops-secret"))
    assert tenant is not None and tenant.name == "ops"


def test_models_are_ids_aliases_and_globs_resolved_to_ids() -> None:
    tenant = ring(keys={"batch": BATCH}).tenants["batch"]
    assert tenant.models == {"qwen2.5-7b", "embed-small", "embed-large"}


def test_a_key_without_models_may_use_every_model() -> None:
    assert ring(keys={"ops": {"key": "o", "scopes": ["admin"]}}).tenants["ops"].models is None


def test_the_api_key_is_one_key_with_every_scope() -> None:
    tenant = ring(api_key="legacy").authenticate(bearer("legacy"))
    assert tenant is not None and tenant.scopes == {"inference", "read", "admin"} and tenant.models is None


def test_with_no_key_configured_the_service_is_open() -> None:
    assert ring().open and not ring(api_key="x").open


def test_a_key_removed_by_a_reload_is_nobody_at_once() -> None:
    keyring = ring(keys={"batch": BATCH, "ops": {"key": "o", "scopes": ["admin"]}})
    keyring.configure(Settings(models=MODELS, keys={"ops": {"key": "o", "scopes": ["admin"]}}))
    assert keyring.authenticate(bearer("b-secret")) is None and keyring.authenticate(bearer("o")) is not None


def test_check_model_refuses_a_model_outside_the_keys_models_naming_it() -> None:
    token = keys.act_as(ring(keys={"batch": BATCH}).tenants["batch"])
    try:
        keys.check_model("qwen2.5-7b")
        with pytest.raises(APIError) as refused:
            keys.check_model("gemma")
    finally:
        keys.release(token)
    assert (refused.value.status, refused.value.code) == (403, "permission_denied")
    assert "'gemma'" in refused.value.message
