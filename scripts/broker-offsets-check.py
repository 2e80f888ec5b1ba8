"""Does a broker report the right end offset after records produced in batches?

    .venv/bin/python scripts/broker-offsets-check.py HOST:PORT 5,3 TOPIC

Creates TOPIC (1 partition), produces one batch per number (acks=all, one flush per
batch), then prints, for both isolation levels, the ListOffsets answers
(``beginning_offsets`` / ``end_offsets``), the high watermark and last stable offset
of a Fetch, and how many records a consumer reads from the start. A correct broker
says ``end 8 highwater 8 read 8`` for ``5,3``. Measurements: docs/brokers.md.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def main(bootstrap: str, batches: list[int], topic: str) -> None:
    """Produce ``batches`` into ``topic`` on ``bootstrap`` and print what it reports."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        for n in batches:
            futures = [await producer.send(topic, f"v{i}".encode(), partition=0)
                       for i in range(n)]
            print("batch", n, "offsets", [(await f).offset for f in futures])
    finally:
        await producer.stop()
    tp = TopicPartition(topic, 0)
    for isolation in ("read_uncommitted", "read_committed"):
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             isolation_level=isolation)
        await c.start()
        try:
            c.assign([tp])
            end = (await c.end_offsets([tp]))[tp]
            begin = (await c.beginning_offsets([tp]))[tp]
            await c.seek_to_beginning(tp)
            read = 0
            deadline = time.monotonic() + 5
            while read < sum(batches) and time.monotonic() < deadline:
                for records in (await c.getmany(timeout_ms=300)).values():
                    read += len(records)
            print(isolation, "begin", begin, "end", end, "highwater", c.highwater(tp),
                  "lso", c.last_stable_offset(tp), "read", read)
        finally:
            await c.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]))
