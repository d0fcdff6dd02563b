"""The Kafka connection log: aiokafka's flood during an outage becomes one line per state change."""

from __future__ import annotations

import logging

from shared.logs import KafkaConnectionLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_an_outage_is_lost_retrying_back_and_nothing_else() -> None:
    clock = Clock()
    log = KafkaConnectionLog(clock=clock)
    refused = "Unable connect to node with id %s: [Errno 111] Connection refused"
    flood = [
        record("aiokafka", logging.ERROR, refused, 1),
        record("aiokafka", logging.ERROR, "Unable to update metadata from [1]"),
        record(
            "aiokafka.consumer.fetcher", logging.ERROR, "Failed fetch messages from 1: NodeNotReadyError: x"
        ),
        record(
            "aiokafka.consumer.group_coordinator", logging.WARNING, "Marking the coordinator dead (node 1)"
        ),
    ]
    written: list[logging.LogRecord] = []
    for second in range(20):  # 20 s of an outage, the four kinds of line 100 times a second
        clock.now = float(second)
        for _ in range(100):
            copies = [logging.makeLogRecord(r.__dict__) for r in flood]
            written += [copy for copy in copies if log.filter(copy)]
    clock.now = 21.0
    found = record(
        "aiokafka.consumer.group_coordinator", logging.INFO, "Discovered coordinator %s for group %s", 1, "g"
    )
    assert log.filter(found)
    written.append(found)
    joined = record(
        "aiokafka.consumer.group_coordinator", logging.INFO, "Discovered coordinator 1 for group h"
    )
    assert not log.filter(joined)  # the connection is already back: aiokafka's INFO stays out as before

    messages = [(r.levelname, r.getMessage()) for r in written]
    assert messages == [
        (
            "WARNING",
            "kafka connection lost: Unable connect to node with id 1: [Errno 111] Connection refused",
        ),
        (
            "WARNING",
            "kafka connection still down, retrying: Unable connect to node with id 1: "
            "[Errno 111] Connection refused",
        ),
        ("WARNING", "kafka connection back after 21.0s (7998 aiokafka lines held back)"),
    ]


def test_other_records_pass_as_before() -> None:
    log = KafkaConnectionLog()
    assert log.filter(record("conveyor.registry", logging.INFO, "ready"))
    assert log.filter(record("aiokafka", logging.ERROR, "Unexpected error in fetcher routine"))
    # A group's coordinator moving (after a broker restart, a rebalance) is no change of the connection.
    heartbeat = "Heartbeat failed for group g: coordinator (node 1) is either not started or not valid"
    assert not log.filter(record("aiokafka.consumer.group_coordinator", logging.WARNING, heartbeat))
    assert not log.filter(record("aiokafka", logging.INFO, "Discovered coordinator 1 for group g"))
