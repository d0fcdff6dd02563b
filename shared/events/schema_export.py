"""Export the JSON Schema of every event, so non-Python producers and consumers have the contract.

Run ``python -m shared.events.schema_export`` after changing an event; a unit test fails while the
committed files are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.events import ALL_EVENTS, Event

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_file(event_type: type[Event]) -> Path:
    """Where the schema of ``event_type`` is committed."""
    version = event_type.model_fields["schema_version"].default
    return SCHEMA_DIR / f"{event_type.__name__}.v{version}.json"


def render_schema(event_type: type[Event]) -> str:
    """The JSON Schema of ``event_type``, with its topic, as stable text."""
    schema = event_type.model_json_schema(mode="serialization")
    schema["x-topic"] = event_type.topic
    schema["x-kafka-key"] = "pipeline"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_schemas() -> list[Path]:
    """Write every event's schema; returns the files written."""
    SCHEMA_DIR.mkdir(exist_ok=True)
    written = []
    for event_type in ALL_EVENTS:
        path = schema_file(event_type)
        path.write_text(render_schema(event_type))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export_schemas():
        print(path)
