#!/usr/bin/env python3
"""The Kafka requests a broker received, by client and API, per second of each time window.

Capture the broker's port while the platform runs (e.g. `cargo xtask bench --runs 1 --only
commands`, whose tansu listens on a free port: `pgrep -af 'tansu broker'` tells it), then
count; every client of the platform is named (a consumer by its group, `plexica-producer`,
`plexica-log-ends`):

    dumpcap -q -i lo -f 'tcp port PORT' -w /tmp/broker.pcapng
    python3 tests/benches/broker/requests_by_client.py /tmp/broker.pcapng PORT [T0 T1 ...]

T0 T1 … are Unix times bounding the windows (the whole capture without them). Needs tshark.
"""
import collections
import subprocess
import sys

API = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit",
       9: "OffsetFetch", 10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat",
       13: "LeaveGroup", 14: "SyncGroup", 18: "ApiVersions", 19: "CreateTopics",
       22: "InitProducerId", 71: "GetTelemetrySubscriptions"}


def main():
    capture, port = sys.argv[1], sys.argv[2]
    bounds = [float(t) for t in sys.argv[3:]]
    fields = subprocess.run(
        ["tshark", "-r", capture, "-d", f"tcp.port=={port},kafka",
         "-Y", f"kafka.request_key && tcp.dstport=={port}", "-T", "fields",
         "-e", "frame.time_epoch", "-e", "kafka.request_key", "-e", "kafka.client_id",
         "-E", "occurrence=a", "-E", "aggregator=;"],
        capture_output=True, text=True, check=True).stdout
    requests = []
    for line in fields.splitlines():
        at, keys, clients = (line.split("\t") + ["", ""])[:3]
        clients = clients.split(";")
        for i, key in enumerate(k for k in keys.split(";") if k):
            requests.append((float(at), API.get(int(key), key), clients[min(i, len(clients) - 1)]))
    if not requests:
        sys.exit("no Kafka requests in the capture")
    if len(bounds) < 2:
        bounds = [requests[0][0], requests[-1][0] + 1]
    for start, end in zip(bounds, bounds[1:]):
        seconds = end - start
        counts = collections.Counter((client, api) for at, api, client in requests if start <= at < end)
        by_api = collections.Counter()
        for (_, api), n in counts.items():
            by_api[api] += n
        print(f"== {start:.1f} .. {end:.1f} ({seconds:.1f} s): {sum(counts.values()) / seconds:.1f} requests/s")
        print("   by API: " + ", ".join(f"{api} {n / seconds:.1f}/s" for api, n in by_api.most_common()))
        for (client, api), n in counts.most_common(25):
            print(f"   {n / seconds:8.1f}/s  {api:26} {client}")


if __name__ == "__main__":
    main()
