"""Structured logs: one JSON object a line, carrying the service and the current trace id."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    """Formats records as JSON with the trace and span ids of the active span."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line for ``record``."""
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for key in ("correlation_id", "pipeline", "event_id"):
            if hasattr(record, key):
                entry[key] = str(getattr(record, key))
        if hasattr(record, "audit"):  # shared.auth's audit trail: who, when, what, why
            entry["audit"] = record.audit
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# What aiokafka logs, at WARNING or ERROR, for each attempt that finds the broker away: some 7,700
# lines from one service in a 20 s outage (connect, metadata, fetch, coordinator, heartbeat).
_TROUBLE = re.compile(
    r"Unable connect|Unable to (update|request) metadata|NodeNotReady|KafkaConnectionError|Connection at"
    r"|not ready"
)
# A group's coordinator lost or moved (heartbeats refused after a broker restart or a rebalance):
# aiokafka finds it again by itself, so these are held back whatever the connection's state.
_COORDINATOR = re.compile(r"coordinator|Heartbeat", re.IGNORECASE)
# What aiokafka logs (at INFO) once a consumer finds its group again: the connection is back.
_RECOVERED = re.compile(
    r"Discovered coordinator|Successfully synced group|Joined group|Setting newly assigned"
)
_RETRYING_AFTER_S = 1.0


class KafkaConnectionLog(logging.Filter):
    """One line per change of the Kafka connection's state (lost, retrying, back) instead of aiokafka's flood.

    aiokafka logs every failed attempt; this filter lets the first failure through as "lost", one
    more a second later as "retrying", and the first sign of recovery as "back" with the outage's
    length and how many lines it held back. Its other records stay below WARNING as before.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._lost_at: float | None = None
        self._retrying = False
        self.held_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written; a state change is rewritten as one plain line."""
        if not record.name.startswith("aiokafka"):
            return True
        message = record.getMessage()
        if record.levelno >= logging.WARNING and _TROUBLE.search(message):
            return self._trouble(record, message)
        if record.levelno >= logging.WARNING and _COORDINATOR.search(message):
            if self._lost_at is not None:
                self.held_back += 1
            return False
        if self._lost_at is not None and _RECOVERED.search(message):
            return self._back(record)
        return record.levelno >= logging.WARNING

    def _trouble(self, record: logging.LogRecord, message: str) -> bool:
        now = self._clock()
        if self._lost_at is None:
            self._lost_at, self._retrying = now, False
            return _rewrite(record, logging.WARNING, f"kafka connection lost: {message}")
        if not self._retrying and now - self._lost_at >= _RETRYING_AFTER_S:
            self._retrying = True
            return _rewrite(record, logging.WARNING, f"kafka connection still down, retrying: {message}")
        self.held_back += 1
        return False

    def _back(self, record: logging.LogRecord) -> bool:
        assert self._lost_at is not None
        outage = self._clock() - self._lost_at
        line = f"kafka connection back after {outage:.1f}s ({self.held_back} aiokafka lines held back)"
        self._lost_at, self.held_back = None, 0
        return _rewrite(record, logging.WARNING, line)


def _rewrite(record: logging.LogRecord, level: int, message: str) -> bool:
    record.msg, record.args = message, ()
    record.levelno, record.levelname = level, logging.getLevelName(level)
    return True


def configure_logging(service: str, *, level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(KafkaConnectionLog())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka's INFO records reach the filter, which keeps only its signs of recovery.
    logging.getLogger("aiokafka").setLevel(logging.INFO)
