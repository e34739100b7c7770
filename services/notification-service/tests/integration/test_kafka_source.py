"""The Kafka source against the real broker from infra/kafka."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from notification_service.adapters.sources import KafkaSource, TopicNotReady

pytestmark = pytest.mark.integration


def test_a_missing_topic_is_reported_and_no_member_joins_empty_handed(kafka_bootstrap):
    source = KafkaSource(kafka_bootstrap, f"test.missing.{uuid.uuid4().hex[:10]}", group_id=f"g-{uuid.uuid4().hex[:8]}")
    with pytest.raises(TopicNotReady, match="does not exist or has no partitions"):
        source.fetch(lambda: {})
    assert source._consumer is None  # nothing half-joined is kept: the next fetch tries again


def test_records_of_every_partition_arrive_once_from_the_stored_positions(kafka_bootstrap, kafka_topic):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap.split(","))
    sent = {}
    for i in range(12):
        meta = producer.send(kafka_topic, key=f"plan-{i}".encode(), value=json.dumps({"n": i}).encode()).get(timeout=30)
        sent.setdefault(meta.partition, []).append(meta.offset)
    producer.close()
    skipped_part = next(iter(sent))
    stored = {skipped_part: sent[skipped_part][0]}  # the first record of one partition was handled before
    source = KafkaSource(kafka_bootstrap, kafka_topic, group_id=f"g-{uuid.uuid4().hex[:8]}")
    got: list = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < 11 and time.monotonic() < deadline:
            try:
                records = source.fetch(lambda: dict(stored))
            except Exception:  # noqa: BLE001 - as the consumer loop does: on a fresh broker the
                time.sleep(0.2)  # group coordinator may not be ready yet; try again
                continue
            got += records
            # stored as the consumer stores them (with their effects): a rebalance on a loaded
            # machine (the group joined again) seeks to these, not to where the test began
            for r in records:
                stored[r.part] = max(stored.get(r.part, -1), r.position)
    finally:
        source.close()
    expected = {(p, o) for p, offsets in sent.items() for o in offsets} - {(skipped_part, sent[skipped_part][0])}
    assert {(r.part, r.position) for r in got} == expected
    assert len(got) == len(expected)
