"""Serve the sandbox portal: ``python -m sandbox [--host 127.0.0.1] [--port 8100]``."""

from __future__ import annotations

import argparse

from werkzeug.serving import make_server

from . import create_app


def main(argv: list[str] | None = None) -> None:
    """Run one threaded process, as the in-memory state requires."""
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, create_app(), threaded=True)
    print(f"Sandbox payer portal on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
