"""The lab's HTTP server for iPXE scripts, the kernel, the initrd and the root squashfs.

The standard library's threading server is enough for a handful of guests; the module
adds what the lab needs around it: bind to one address, say "ready" once bound, log each
request to stderr (the lab's http.log) and stop cleanly on SIGTERM.
Run: python -m harness.lab.http --address 10.77.0.1 --port 8080 --root DIR
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

READY = "VET-HTTP-READY"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.lab.http")
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args(argv)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=args.root)
    try:
        server = ThreadingHTTPServer((args.address, args.port), handler)
    except OSError as exc:
        print(f"cannot listen on {args.address}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server.daemon_threads = True

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"{READY} http {args.address}:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
