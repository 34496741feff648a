"""The ``[keys.<name>]`` tables: who may call the router, for what, on which models, and how much.

A key's *name* is what logs, metrics and the usage ledger show; its secret is never shown
anywhere. The secret is given as ``key`` (a literal, or ``"env:VAR"`` to read it from the
environment when the config is loaded) or as ``sha256`` (its hex digest, so the file holds
no secret at all). The router compares digests only (router/tenancy/keys.py).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Scope = Literal["inference", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("inference", "read", "admin")
#: The name the top-level ``api_key`` goes by once it is one key among others (every scope, no limit).
LEGACY_KEY_NAME = "api_key"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: The SHA-256 of no secret at all - what ``printf %s "$SECRET" | sha256sum`` prints when SECRET is unset.
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()
_GLOB = re.compile(r"[*?\[]")


class KeyConfig(BaseModel):
    """One ``[keys.<name>]`` table."""

    model_config = ConfigDict(extra="forbid")

    name: str
    key: SecretStr | None = Field(default=None, description='the secret, or "env:VAR" to read it from VAR')
    sha256: str | None = Field(default=None, description="the hex SHA-256 of the secret, instead of `key`")
    scopes: list[Scope] = Field(min_length=1)
    models: list[str] | None = Field(default=None, description="ids, aliases or globs; unset: every model")
    max_concurrent: int | None = Field(default=None, ge=1, description="requests in flight and queued, all models")
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1, description="prompt + completion tokens")
    weight: float = Field(default=1.0, gt=0, description="its share of a busy model against other keys")
    max_priority: int = Field(default=3, ge=1, le=3, description="a higher requested priority is lowered to this")
    capture: bool = Field(default=False, description="keep its requests' bodies in the activity history")

    @field_validator("key", mode="before")
    @classmethod
    def _from_environment(cls, value: object) -> object:
        """``env:VAR`` is read now: a key whose variable is missing is a config error, not a locked door."""
        if isinstance(value, str) and value.startswith("env:"):
            variable = value.removeprefix("env:")
            secret = os.environ.get(variable)
            if not secret:
                raise ValueError(f"environment variable {variable} is not set (or empty)")
            return secret
        return value

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        """A digest of the empty string would make ``Authorization: Bearer`` with no secret a valid key."""
        if value is not None and not _HEX_DIGEST.fullmatch(value):
            raise ValueError("must be the 64 hex digits of the secret's SHA-256")
        if value is not None and value.lower() == EMPTY_DIGEST:
            raise ValueError("is the SHA-256 of an empty secret (was the variable you hashed unset?)")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of 'key' (the secret or \"env:VAR\") and 'sha256'")
        if self.key is not None and not self.key.get_secret_value():
            raise ValueError("'key' is empty")
        return self

    @property
    def digest(self) -> bytes:
        """The SHA-256 of the secret: all the router keeps of it."""
        if self.sha256 is not None:
            return bytes.fromhex(self.sha256)
        assert self.key is not None
        return hashlib.sha256(self.key.get_secret_value().encode()).digest()


def is_glob(pattern: str) -> bool:
    return _GLOB.search(pattern) is not None


def key_models(patterns: Iterable[str], names: Mapping[str, str]) -> frozenset[str]:
    """The model ids ``patterns`` grant: each an id, an alias or a glob over both (``names``: name -> id)."""
    granted: set[str] = set()
    for pattern in patterns:
        if is_glob(pattern):
            granted.update(model_id for name, model_id in names.items() if fnmatch.fnmatchcase(name, pattern))
        elif pattern in names:
            granted.add(names[pattern])
    return frozenset(granted)


def check_keys(keys: Mapping[str, KeyConfig], names: Mapping[str, str], legacy: SecretStr | None) -> None:
    """Every plain model name a key lists is configured (a glob may match nothing yet), and no two
    keys share a secret (a request must name one key). ``legacy``: the top-level ``api_key``."""
    for key in keys.values():
        for pattern in key.models or ():
            if not is_glob(pattern) and pattern not in names:
                raise ValueError(f"keys.{key.name}.models: {pattern!r} is not a configured model or alias")
    if legacy is not None and not legacy.get_secret_value():
        raise ValueError("api_key is empty: no secret would be needed (unset it to run without keys)")
    if legacy is not None and LEGACY_KEY_NAME in keys:
        raise ValueError(f"keys.{LEGACY_KEY_NAME}: the name is taken by the top-level api_key")
    holders: dict[bytes, str] = {}
    if legacy is not None:
        holders[hashlib.sha256(legacy.get_secret_value().encode()).digest()] = LEGACY_KEY_NAME
    for key in keys.values():
        if (other := holders.setdefault(key.digest, key.name)) != key.name:
            raise ValueError(f"keys.{key.name}: the same secret as keys.{other}")
