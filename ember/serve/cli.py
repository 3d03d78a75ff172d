"""`ember serve PATH`: TF Serving and KServe v2 REST for ember exports, with dynamic batching."""
import logging
import signal
import sys


def add_arguments(parser):
    parser.add_argument("path", help="an export folder, or a repository of NAME/VERSION/ export folders")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501, TF Serving's REST port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--config", help="JSON config file: batching, runtime, limits, per-model settings")
    parser.add_argument("--max-batch-size", type=int, help="rows merged into one runtime call (default 32)")
    parser.add_argument("--batch-timeout-micros", type=int,
                        help="longest wait for a batch to fill, in microseconds (default 1000)")
    parser.add_argument("--num-batch-threads", type=int, help="batches running at once (default 1)")
    parser.add_argument("--no-batching", action="store_true", help="one runtime call per request")
    parser.add_argument("--max-header-bytes", type=int,
                        help="largest request head (request line + headers), else 431 (default 65536)")
    parser.add_argument("--header-timeout-seconds", type=float,
                        help="time for a request head to arrive, else 408 and closed (default 10)")
    parser.add_argument("--body-timeout-seconds", type=float,
                        help="time for a request body to arrive after its head, else closed (default 60)")
    parser.add_argument("--max-connections", type=int,
                        help="open connections at most; past it new ones get 503 (default 1000)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def run(args) -> int:
    import uvicorn

    from ember.serve.app import create_app
    from ember.serve.config import load_config
    from ember.serve.http_limits import ensure_file_descriptors, protocol_with

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(args.config, max_batch_size=args.max_batch_size,
                         batch_timeout_micros=args.batch_timeout_micros, num_batch_threads=args.num_batch_threads,
                         enabled=False if args.no_batching else None, max_header_bytes=args.max_header_bytes,
                         header_timeout_seconds=args.header_timeout_seconds,
                         body_timeout_seconds=args.body_timeout_seconds, max_connections=args.max_connections)
    ensure_file_descriptors(config.http)
    app = create_app(args.path, config)
    models = ", ".join(f"{name} (versions {sorted(t.versions)})"
                       for name, t in app.state.dataplane.repository.models.items())
    url = f"http://{args.host}:{args.port}"
    print(f"ember serve: {models} on {url}  (TF Serving {url}/v1/models/NAME, KServe v2 {url}/v2/models/NAME, "
          f"{url}/metrics, OpenAPI {url}/docs)", flush=True)
    # uvicorn answers SIGTERM by closing the port, finishing in-flight requests, then the lifespan; it then
    # re-raises the signal to the handler it found, which makes that graceful stop exit 0.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # The HTTP limits live in the protocol (http_limits.py): uvicorn's own has no head size limit or deadline.
    uvicorn.run(app, host=args.host, port=args.port, http=protocol_with(config.http), log_level="warning",
                access_log=False, proxy_headers=False, timeout_graceful_shutdown=30)
    return 0
