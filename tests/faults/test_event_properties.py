"""Properties of every event model: JSON round trips, and bad input fails as a ValidationError only.

The safe consumer relies on the second property: a pydantic ValidationError is what sends a message
to the dead-letter topic as ``invalid_payload``; any other exception would be taken for a handler
failure instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import ALL_EVENTS, Event, ModelTrained
from tests.faults.strategies import json_values, model_values

EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
events = pytest.mark.parametrize("event_type", ALL_EVENTS, ids=lambda t: t.__name__)


def _validates_or_refuses(event_type: type[Event], candidate: Any) -> Event | None:
    """The event ``candidate`` describes, or None when pydantic refused it; anything else fails the test."""
    try:
        return event_type.model_validate(candidate)
    except ValidationError:
        return None


def _validates_or_refuses_json(event_type: type[Event], raw: bytes | str) -> Event | None:
    try:
        return event_type.model_validate_json(raw)
    except ValidationError:
        return None


@events
@EXAMPLES
@given(data=st.data())
def test_every_event_round_trips_through_json(event_type: type[Event], data: st.DataObject) -> None:
    event = event_type.model_validate(data.draw(model_values(event_type)))
    wire = event.model_dump_json()
    again = event_type.model_validate_json(wire)
    assert again.model_dump() == event.model_dump(), wire
    assert again.model_dump_json() == wire
    assert json.loads(wire)["schema_version"] == 1
    with pytest.raises(ValidationError):  # frozen
        event.pipeline = "changed"  # type: ignore[misc]


@events
@EXAMPLES
@given(data=st.data())
def test_an_extra_field_is_a_validation_error(event_type: type[Event], data: st.DataObject) -> None:
    values = data.draw(model_values(event_type))
    name = data.draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in event_type.model_fields))
    values[name] = data.draw(json_values)
    with pytest.raises(ValidationError):
        event_type.model_validate(values)
    with pytest.raises(ValidationError):
        event_type.model_validate_json(json.dumps(values))


@events
@EXAMPLES
@given(data=st.data())
def test_a_mutated_field_validates_or_is_a_validation_error(
    event_type: type[Event], data: st.DataObject
) -> None:
    values = data.draw(model_values(event_type))
    name = data.draw(st.sampled_from(sorted(event_type.model_fields)))
    values[name] = data.draw(json_values)
    from_python = _validates_or_refuses(event_type, values)
    from_json = _validates_or_refuses_json(event_type, json.dumps(values))
    assert (from_python is None) == (from_json is None), values


@events
@EXAMPLES
@given(data=st.data())
def test_damaged_bytes_validate_or_are_a_validation_error(
    event_type: type[Event], data: st.DataObject
) -> None:
    wire = json.dumps(data.draw(model_values(event_type))).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    damaged = wire[:cut] + data.draw(st.binary(max_size=8)) + wire[cut + 1 :]
    _validates_or_refuses_json(event_type, damaged)
    _validates_or_refuses_json(event_type, data.draw(st.binary(max_size=64)))


@EXAMPLES
@given(values=model_values(ModelTrained), bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_non_finite_float_never_reaches_a_consumer_as_another_exception(
    values: dict[str, Any], bad: float
) -> None:
    """JSON has no NaN: refused when the event is built, or sent as null and refused by the consumer."""
    values["cv_score"] = bad
    try:
        event = ModelTrained.model_validate(values)
    except ValidationError:
        return
    assert _validates_or_refuses_json(ModelTrained, event.model_dump_json()) is None
