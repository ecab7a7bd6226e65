"""A Plexica plugin in Python that publishes on the log with stock clients only
(confluent-kafka, fastavro, urllib): the wire contract of the README ("Events"), nothing of
Plexica's code.

It listens on 127.0.0.1:$PORT, serves the standard endpoints, and

  POST /deals/{id}/won  {"amount": N}   publishes plugin.{pluginId}.deal.won for the caller's
                                         tenant, answering 202 with the event's id.

The record is Avro in the Confluent wire format (magic byte, 4-byte schema id, body), its
schema registered under the topic-record subject with the plugin's own token; the headers are
the CloudEvents Kafka binary binding with the caller's tenant, user and trace.
"""

import datetime
import io
import json
import os
import struct
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
from confluent_kafka import Producer

PLUGIN_ID = os.environ["PLEXICA_PLUGIN_ID"]
VERSION = os.environ.get("PLEXICA_PLUGIN_VERSION", "0.0.0")
TOPIC = os.environ["PLEXICA_PLUGIN_TOPIC"]
REGISTRY = os.environ["SCHEMA_REGISTRY_URL"].rstrip("/")
TOKEN = os.environ["PLEXICA_PLUGIN_TOKEN"]

SCHEMA = {
    "type": "record",
    "name": "DealWon",
    "namespace": "com.plexica.example",
    "fields": [{"name": "deal_id", "type": "string"}, {"name": "amount", "type": "long"}],
}
PARSED = fastavro.parse_schema(SCHEMA)

PRODUCER = Producer(
    {
        "bootstrap.servers": os.environ["KAFKA_BROKERS"],
        "enable.idempotence": True,
        "acks": "all",
        # Kafka's default partitioner: a key lands where every other client puts it.
        "partitioner": "murmur2_random",
    }
)
LOCK = threading.Lock()
SCHEMA_ID = None


def schema_id():
    """Registers the schema on first use; the registry answers the same id every time."""
    global SCHEMA_ID
    with LOCK:
        if SCHEMA_ID is None:
            subject = f"{TOPIC}-{SCHEMA['namespace']}.{SCHEMA['name']}"
            request = urllib.request.Request(
                f"{REGISTRY}/subjects/{subject}/versions",
                data=json.dumps({"schema": json.dumps(SCHEMA)}).encode(),
                headers={
                    "Content-Type": "application/vnd.schemaregistry.v1+json",
                    "Authorization": f"Bearer {TOKEN}",
                },
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                SCHEMA_ID = json.load(answer)["id"]
        return SCHEMA_ID


def publish(deal_id, amount, tenant, user, traceparent):
    body = io.BytesIO()
    body.write(b"\0" + struct.pack(">I", schema_id()))
    fastavro.schemaless_writer(body, PARSED, {"deal_id": deal_id, "amount": amount})
    event_id = str(uuid.uuid4())
    headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", event_id),
        ("ce_type", f"plugin.{PLUGIN_ID}.deal.won"),
        ("ce_source", f"plexica/plugin/{PLUGIN_ID}"),
        ("ce_time", datetime.datetime.now(datetime.timezone.utc).isoformat()),
        ("ce_subject", deal_id),
        ("content-type", "avro/binary"),
        ("tenant-id", tenant),
    ]
    if user:
        headers.append(("user-id", user))
    if traceparent:
        headers.append(("traceparent", traceparent))
    failures = []
    PRODUCER.produce(
        TOPIC,
        key=deal_id,
        value=body.getvalue(),
        headers=headers,
        on_delivery=lambda error, _message: error and failures.append(error),
    )
    if PRODUCER.flush(10) > 0:
        raise RuntimeError("the broker did not acknowledge the event in 10 s")
    if failures:
        raise RuntimeError(str(failures[0]))
    return event_id


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, content_type="application/json"):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path in ("/health", "/ready", "/metrics"):
            self.reply(200, {"status": "ok"})
        elif self.path == "/openapi.json":
            self.reply(200, {"openapi": "3.1.0", "info": {"title": PLUGIN_ID, "version": VERSION}, "paths": {}})
        else:
            self.reply(404, {"status": 404, "title": "Not Found"}, "application/problem+json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 20))
        parts = self.path.strip("/").split("/")
        tenant = self.headers.get("X-Tenant-ID")
        if len(parts) != 3 or parts[0] != "deals" or parts[2] != "won" or not tenant:
            self.reply(404, {"status": 404, "title": "Not Found"}, "application/problem+json")
            return
        try:
            amount = int(json.loads(raw or b"{}").get("amount", 0))
        except (ValueError, AttributeError):
            self.reply(400, {"status": 400, "title": "Bad Request", "detail": "amount"}, "application/problem+json")
            return
        try:
            event_id = publish(
                parts[1],
                amount,
                tenant,
                self.headers.get("X-User-ID"),
                self.headers.get("traceparent"),
            )
        except Exception as error:  # the broker or the registry: the client may try again
            self.reply(503, {"status": 503, "title": "Service Unavailable", "detail": str(error)}, "application/problem+json")
            return
        self.reply(202, {"eventId": event_id})

    def log_message(self, *_args):
        pass


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    print(f"listening on 127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
