#!/usr/bin/env python3
"""What one request of each kind costs a tansu broker's CPU.

Sends N requests of each kind one at a time from one client and reads the broker's CPU ticks
from /proc before and after, so that a command's cost can be added up from the requests it
makes (count those with requests_by_client.py). Run it against a broker of its own, nothing
else connected:

    mkdir -p /tmp/tansu-costs && cd /tmp/tansu-costs && tansu broker \
      --listener-url tcp://127.0.0.1:19093 --advertised-listener-url tcp://127.0.0.1:19093 \
      --storage-engine sqlite://tansu.db --cluster-id plexica &
    sqlite3 tansu.db 'CREATE INDEX plexica_header_record ON header (topition, offset_id)'
    .plexica/venv/bin/python tests/benches/broker/request_costs.py 127.0.0.1:19093

(The index is the one `cargo xtask up` and `bench` add to tansu's sqlite storage.)
"""
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BROKER = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:19093"
N = int(os.environ.get("N", "500"))
PORT = BROKER.rsplit(":", 1)[1]
PID = int(subprocess.check_output(["pgrep", "-f", f"tansu broker.*:{PORT}"]).split()[0])
HZ = os.sysconf("SC_CLK_TCK")
# The headers every event of the platform carries (the CloudEvents binding and the design's).
HEADERS = [(k, b"x" * 20) for k in [
    "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "content-type",
    "tenant-id", "user-id", "traceparent", "correlation-id", "causation-id",
    "aggregate-version", "writer-epoch"]]
QUIET = {"bootstrap.servers": BROKER, "enable.metrics.push": False}


def ticks():
    fields = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def measure(name, request, times=N):
    before, started = ticks(), time.time()
    for i in range(times):
        request(i)
    spent, took = (ticks() - before) / HZ, time.time() - started
    print(f"{name:58} {1000 * spent / times:6.2f} ms of the broker's CPU each, {1000 * took / times:6.2f} ms wall")


def main():
    admin = AdminClient({"bootstrap.servers": BROKER})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in ["costs", "costs-empty"]]).values():
        try:
            future.result()
        except Exception as error:  # it exists from an earlier run
            print(error)
    producer = Producer({**QUIET, "acks": "all", "enable.idempotence": True, "linger.ms": 0})

    def produce(headers, records=1):
        def request(i):
            for _ in range(records):
                producer.produce("costs", key=b"k%d" % i, value=b"v" * 200, headers=headers)
            producer.flush()
        return request

    measure("Produce, 1 record, no headers", produce(None))
    measure("Produce, 1 record, 14 headers", produce(HEADERS))
    measure("Produce, 10 records of 14 headers", produce(HEADERS, 10))
    group = Consumer({**QUIET, "group.id": "costs-" + uuid.uuid4().hex, "enable.auto.commit": False})
    measure("OffsetCommit, 1 partition",
            lambda i: group.commit(offsets=[TopicPartition("costs", 0, i)], asynchronous=False))
    measure("ListOffsets (a high watermark), 1 partition",
            lambda i: group.get_watermark_offsets(TopicPartition("costs", 0), cached=False))
    end = group.get_watermark_offsets(TopicPartition("costs", 0), cached=False)[1]
    reader = Consumer({**QUIET, "group.id": "costs-" + uuid.uuid4().hex, "fetch.wait.max.ms": 0})

    def fetch(records):
        def request(_):
            reader.assign([TopicPartition("costs", 0, end - records)])
            for _ in range(records):
                message = reader.poll(5)
                assert message is not None and message.error() is None, message
            reader.unassign()
        return request

    measure("Fetch of the last record (assign, fetch, unassign)", fetch(1))
    measure("Fetch of the last 10 records (assign, fetch, unassign)", fetch(10))
    producer.produce("costs-empty", value=b"x")
    producer.flush()
    for wait in [5, 50, 500]:
        idle = Consumer({**QUIET, "group.id": "costs-" + uuid.uuid4().hex, "fetch.wait.max.ms": wait})
        idle.assign([TopicPartition("costs-empty", 0, 1)])
        idle.poll(1)
        before, started = ticks(), time.time()
        while time.time() - started < 5:
            idle.poll(0.1)
        cores = (ticks() - before) / HZ / (time.time() - started)
        print(f"one consumer polling an empty partition, fetch.wait.max.ms={wait:3}: {cores:.3f} cores"
              f" ({1000 * cores * wait / 1000:.2f} ms a fetch)")
        idle.close()


if __name__ == "__main__":
    main()
