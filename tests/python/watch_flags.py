"""A flag subscriber written against code generated from proto/ with grpcio-tools.

Usage: watch_flags.py GENERATED_DIR ADDR TOKEN TENANT FLAG

Prints "SNAPSHOT <revision> <flags>" after the first event, then waits for an
UPSERT of FLAG and prints "UPSERT <flag> <source> <json value> <revision>".
Exits 0 on success, 1 on anything else (including 20 s without the event).

With COMPRESSION=gzip in the environment, the channel compresses every
message it sends with gzip (grpcio's `compression=grpc.Compression.Gzip`).
"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from switchyard.v1 import flag_pb2, flag_pb2_grpc  # noqa: E402


def main():
    _, _, addr, token, tenant, flag = sys.argv
    compression = {"gzip": grpc.Compression.Gzip}.get(os.environ.get("COMPRESSION", ""))
    channel = grpc.insecure_channel(addr, compression=compression)
    stub = flag_pb2_grpc.FlagServiceStub(channel)
    stream = stub.WatchFlags(
        flag_pb2.WatchFlagsRequest(tenant_id=tenant, since_revision=0),
        metadata=[("authorization", "Bearer " + token)],
        timeout=20,
    )
    first = True
    for event in stream:
        if first:
            if event.type != flag_pb2.FLAG_EVENT_TYPE_SNAPSHOT:
                print("expected a SNAPSHOT first, got", event.type)
                return 1
            print("SNAPSHOT", event.revision, len(event.flags), flush=True)
            first = False
            continue
        if event.type == flag_pb2.FLAG_EVENT_TYPE_UPSERT and event.flag.flag == flag:
            value = json_format.MessageToJson(event.flag.value, indent=None)
            print("UPSERT", event.flag.flag, event.flag.source, json.dumps(json.loads(value)), event.revision, flush=True)
            return 0
    print("stream ended without the change")
    return 1


if __name__ == "__main__":
    sys.exit(main())
