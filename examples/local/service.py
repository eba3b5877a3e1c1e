"""A small stand-in for the cluster's services: serves health, version, metrics and the
data folder on a loopback port. Started detached by the foundation module, stopped by the
last gate."""

import http.server
import json
import os
import sys
import time

PORT = int(sys.argv[1])
ROOT = sys.argv[2]
STARTED = time.time()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, "ok\n")
        if self.path == "/version":
            path = os.path.join(ROOT, "release", "VERSION")
            if not os.path.exists(path):
                return self.reply(404, "no release deployed\n")
            with open(path) as f:
                return self.reply(200, f.read())
        if self.path == "/metrics":
            body = f"uptime_seconds {time.time() - STARTED:.1f}\nrequests_total 1\n"
            return self.reply(200, body)
        if self.path == "/config":
            with open(os.path.join(ROOT, "config", "service.json")) as f:
                return self.reply(200, f.read())
        return self.reply(404, "not found\n")

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    with open(os.path.join(ROOT, "service.pid"), "w") as f:
        f.write(str(os.getpid()))
    server.serve_forever()
