"""Hypothesis strategies built from the event models themselves: JSON values every field accepts.

Each field's annotation and constraints (pattern, lengths, bounds, literals, nested models) decide
what is drawn, so a new event or field is covered without touching this module. Sizes are kept
small so that hundreds of examples run in seconds.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import annotated_types
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, StringConstraints

MAX_ITEMS = 3
MAX_TEXT = 40
# Integers JSON carries exactly everywhere (JavaScript's safe range).
MAX_INT = 2**53

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_INT, max_value=MAX_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=MAX_ITEMS) | st.dictionaries(st.text(max_size=8), inner, max_size=MAX_ITEMS)
    ),
    max_leaves=8,
)


def model_values(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON-ready dicts that ``model`` accepts: every required field, any of the optional ones."""
    required, optional = {}, {}
    for name, field in model.model_fields.items():
        strategy = _for(field.annotation, list(field.metadata))
        (required if field.is_required() else optional)[name] = strategy
    return st.fixed_dictionaries(required, optional=optional)


def _for(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _for(inner, [*metadata, *extra])
    if origin in (Union, types.UnionType):
        return st.one_of([_for(arm, metadata) for arm in get_args(annotation)])
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        low, high = _length(metadata, default_max=MAX_ITEMS)
        return st.lists(_for(item, []), min_size=low, max_size=min(high, low + MAX_ITEMS))
    if origin is dict:
        key, value = get_args(annotation)
        return st.dictionaries(_for(key, []), _for(value, []), max_size=MAX_ITEMS)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_values(annotation)
    return _scalar(annotation, metadata)


def _scalar(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    if annotation is type(None):
        return st.none()
    if annotation is Any:
        return json_values
    if annotation is UUID:
        return st.uuids().map(str)
    if annotation is AwareDatetime:
        offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
            lambda m: timezone(timedelta(minutes=m))
        )
        return st.datetimes(timezones=offsets).map(datetime.isoformat)
    if annotation is datetime:
        return st.datetimes(timezones=st.none() | st.just(UTC)).map(datetime.isoformat)
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low = _bound(metadata, "ge", default=-MAX_INT)
        return st.integers(min_value=low, max_value=_bound(metadata, "le", default=MAX_INT))
    if annotation is float:
        low, high = _bound(metadata, "ge", default=None), _bound(metadata, "le", default=None)
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if annotation is str:
        return _text(metadata)
    raise NotImplementedError(f"no strategy for {annotation!r}: teach tests/faults/strategies.py")


def _text(metadata: list[Any]) -> st.SearchStrategy[str]:
    constraints = [m for m in metadata if isinstance(m, StringConstraints)]
    pattern = next((c.pattern for c in constraints if c.pattern), None)
    low = max([c.min_length or 0 for c in constraints], default=0)
    high = min([c.max_length for c in constraints if c.max_length is not None], default=None)
    if pattern is not None:
        return st.from_regex(str(pattern), fullmatch=True).filter(lambda s: low <= len(s) <= (high or len(s)))
    return st.text(min_size=low, max_size=low + MAX_TEXT if high is None else min(high, low + MAX_TEXT))


def _length(metadata: list[Any], *, default_max: int) -> tuple[int, int]:
    low = max([m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)], default=0)
    high = min([m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)], default=default_max)
    return low, high


def _bound(metadata: list[Any], name: str, *, default: Any) -> Any:
    return next((getattr(m, name) for m in metadata if hasattr(m, name)), default)
