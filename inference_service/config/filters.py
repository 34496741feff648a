"""``[models.<id>.filters]``: what the router changes in every generation request to one model.

An operator's rules, not a client's choice: a default temperature for a model that rambles
when sampled hot, a cap on ``max_tokens`` for a model that must answer quickly, fields a
runtime mishandles taken out. Keys are named as in an OpenAI chat request; the router maps
each to the name the called API uses (router/proxy/filters.py), so one rule holds whichever
API the client speaks.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from inference_service.config.fields import StrictTable

#: The filter that is a cap: the client's value, if smaller, is kept.
CAP_KEY = "max_tokens"
#: Fields the router itself decides (which model, how the answer is framed): no filter may touch them.
ROUTER_OWNED = frozenset({"model", "stream"})


def _scalar(name: str, value: Any) -> Any:
    """One TOML scalar, sendable as JSON: a table, an array or a NaN/infinity would not mean one value."""
    if not isinstance(value, bool | int | float | str):
        kind = "a table" if isinstance(value, dict) else "an array" if isinstance(value, list) else type(value).__name__
        raise ValueError(f"{name!r} must be one value (a string, number or boolean), not {kind}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name!r} must be a finite number, not {value}")
    if name == CAP_KEY and (type(value) is not int or value < 1):
        raise ValueError(f"{name!r} must be a whole number of tokens, at least 1")
    return value


class RequestFilters(StrictTable):
    """Applied, in this order, to the body that goes upstream: ``strip``, ``defaults``, ``overrides``."""

    defaults: dict[str, Any] = Field(default={}, description="set when the request has no value for the field")
    overrides: dict[str, Any] = Field(
        default={}, description="always set; max_tokens is a cap: the client's value if smaller"
    )
    strip: list[str] = Field(default=[], description="fields removed from the request")

    @field_validator("defaults", "overrides")
    @classmethod
    def _one_value_each(cls, values: dict[str, Any]) -> dict[str, Any]:
        for name, value in values.items():
            _not_router_owned(name)
            _scalar(name, value)
        return values

    @field_validator("strip")
    @classmethod
    def _strippable(cls, names: list[str]) -> list[str]:
        for name in names:
            _not_router_owned(name)
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _one_rule_per_field(self) -> RequestFilters:
        """A field with two rules would obey only one of them: say so rather than pick silently."""
        for name in self.strip:
            if name in self.defaults or name in self.overrides:
                where = "defaults" if name in self.defaults else "overrides"
                raise ValueError(f"{name!r} is both stripped and set (in {where})")
        for name in self.defaults:
            if name in self.overrides:
                raise ValueError(f"{name!r} is in both defaults and overrides (the override would always win)")
        return self

    @property
    def active(self) -> bool:
        return bool(self.defaults or self.overrides or self.strip)


def _not_router_owned(name: str) -> None:
    if name in ROUTER_OWNED:
        raise ValueError(f"{name!r} is the router's to set (it routes the request and frames the answer)")
