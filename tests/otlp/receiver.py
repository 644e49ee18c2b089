#!/usr/bin/env python3
"""A real OTLP/HTTP receiver for the worker's telemetry tests.

Decodes every request with the opentelemetry-proto package (Google's protobuf
runtime), not with anything of the worker's: http/protobuf bodies with
ParseFromString, http/json bodies with json_format.Parse (which checks the
OTLP JSON mapping), gzip bodies with Python's gzip. Prints one JSON line per
request on stdout:

  {"path", "headers" (lower-case names), "content_type", "encoding",
   "signal" ("metrics" | "traces"), "request" (MessageToDict)}

and "PORT <n>" first. --status N answers every request with N; --hang
accepts requests, reports them ({"path", "hung": true}) and never answers.
"""

import argparse
import base64
import gzip
import http.server
import json
import sys
import threading

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = threading.Lock()


def emit(obj):
    with OUT:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids as hex where proto3 JSON has base64; a real OTLP
    decoder (the collector's) reads hex, and so do we, strictly."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in node:
                raw = bytes.fromhex(node[key])
                want = 16 if key == "traceId" else 8
                if len(raw) != want:
                    raise ValueError(f"{key} is {len(raw)} bytes")
                node[key] = base64.b64encode(raw).decode()
        for v in node.values():
            hex_ids_to_base64(v)
    elif isinstance(node, list):
        for v in node:
            hex_ids_to_base64(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--hang", action="store_true")
    ap.add_argument("--echo", action="store_true",
                    help="put the request's head in the error body (a hostile collector)")
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if args.hang:
                emit({"path": self.path, "hung": True})
                threading.Event().wait()
                return
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            ctype = self.headers.get("Content-Type", "")
            signal = "traces" if "traces" in self.path else "metrics"
            if signal == "traces":
                msg = trace_service_pb2.ExportTraceServiceRequest()
                reply = trace_service_pb2.ExportTraceServiceResponse()
            else:
                msg = metrics_service_pb2.ExportMetricsServiceRequest()
                reply = metrics_service_pb2.ExportMetricsServiceResponse()
            if ctype == "application/json":
                doc = json.loads(body.decode("utf-8"))
                if signal == "traces":
                    hex_ids_to_base64(doc)
                json_format.ParseDict(doc, msg)
            else:
                msg.ParseFromString(body)
            emit({
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "content_type": ctype,
                "encoding": encoding,
                "signal": signal,
                "request": json_format.MessageToDict(msg),
            })
            if args.status == 200:
                out = reply.SerializeToString()
            elif args.echo:
                out = str(self.headers).encode()
            else:
                out = b"collector busy"
            self.send_response(args.status)
            self.send_header("Content-Type", ctype if args.status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    emit_port = f"PORT {server.server_address[1]}\n"
    sys.stdout.write(emit_port)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
