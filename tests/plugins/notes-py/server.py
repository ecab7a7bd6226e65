"""A Plexica plugin in Python, from the bundle contract alone (README: "Writing a plugin").

It listens on 127.0.0.1:$PORT and serves the standard endpoints (/health, /ready,
/openapi.json, /metrics) and a few routes the end-to-end tests use:

  GET  /whoami         the request context the gateway set (X-Tenant-ID, X-User-ID, ...)
  GET  /sleep?seconds= answers after sleeping (the gateway's timeout)
  POST /echo           answers with the body it got
  GET  /allocate?mb=   holds that many MB (the memory limit)

Standard library only: a fresh machine with Python 3 runs it.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PLUGIN_ID = os.environ.get("PLEXICA_PLUGIN_ID", "notes")
VERSION = os.environ.get("PLEXICA_PLUGIN_VERSION", "0.0.0")
# `server.py --without /metrics` leaves out a standard endpoint (the install must fail).
FAIL = {sys.argv[i + 1] for i, arg in enumerate(sys.argv[:-1]) if arg == "--without"}
HELD = []
REQUESTS = 0

OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": f"{PLUGIN_ID} plugin", "version": VERSION},
    "paths": {"/whoami": {"get": {"responses": {"200": {"description": "the request context"}}}}},
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment: without it, Nagle's algorithm and the client's delayed
    # ACK add 40 ms to every reply on a kept-alive connection.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (PLUGIN_ID, fmt % args))

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global REQUESTS
        REQUESTS += 1
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path in FAIL:
            return self.reply(404, {"error": "not served"})
        if url.path in ("/health", "/ready"):
            return self.reply(200, {"status": "ok", "version": VERSION})
        if url.path == "/openapi.json":
            return self.reply(200, OPENAPI)
        if url.path == "/metrics":
            text = f'plugin_requests_total{{plugin="{PLUGIN_ID}"}} {REQUESTS}\n'
            return self.reply(200, text.encode(), "text/plain; version=0.0.4")
        if url.path == "/whoami":
            names = ["X-Tenant-ID", "X-User-ID", "X-Trace-ID", "traceparent", "Authorization"]
            return self.reply(200, {
                "plugin": PLUGIN_ID,
                "version": VERSION,
                "pid": os.getpid(),
                "path": url.path,
                "query": url.query,
                "headers": {name: self.headers.get(name) for name in names},
            })
        if url.path == "/sleep":
            time.sleep(float(query.get("seconds", ["10"])[0]))
            return self.reply(200, {"slept": True})
        if url.path == "/allocate":
            HELD.append(bytearray(int(query.get("mb", ["1"])[0]) * 1024 * 1024))
            return self.reply(200, {"held_mb": sum(len(b) for b in HELD) // (1024 * 1024)})
        return self.reply(404, {"error": "no such route", "path": url.path})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if urlparse(self.path).path == "/echo":
            return self.reply(200, body, self.headers.get("Content-Type", "application/octet-stream"))
        return self.reply(404, {"error": "no such route"})


def main():
    port = int(os.environ["PORT"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    sys.stderr.write(f"{PLUGIN_ID} {VERSION} listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
