"""Bounded load on loopback: ember serve (batching on/off; TF Serving JSON and KServe v2 binary) against a
one-request-per-call FastAPI + eager torch server and LitServe (max_batch_size=64), one digit image per request.

    python benchmarks/serve_load.py [--duration 20] [--warmup 5] [--clients 64,8] [--only ember,baseline,litserve]

Prints req/s, p50, p99, errors and the server's CPU milliseconds per request (user + system time of the
server process and its children over the measured window). The load generator is one asyncio process
with hand-written HTTP/1.1 keep-alive requests, so it costs the shared CPU as little as possible.
"""
import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import psutil

HOST = "127.0.0.1"


# -- servers ------------------------------------------------------------------------------------------
def serve_baseline(folder: str, port: int):
    """FastAPI + eager torch, one model call per request: what a hand-written server does."""
    import torch
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import ORJSONResponse

    model = load_convnet(folder)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        x = torch.tensor((await request.json())["instances"], dtype=torch.float32)
        with torch.inference_mode():
            return ORJSONResponse({"predictions": model(x).numpy()})

    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


def serve_litserve(folder: str, port: int):
    server = ls.LitServer(DigitsAPI(folder, max_batch_size=64, batch_timeout=0.001), accelerator="cpu")
    server.run(host=HOST, port=port, log_level="warning", generate_client_file=False)


try:  # the bench extra; LitServe's workers are spawned processes, which need the class at module level
    import litserve as ls
except ImportError:
    ls = None
if ls is not None:
    class DigitsAPI(ls.LitAPI):
        def __init__(self, folder: str, **options):
            super().__init__(**options)
            self.folder = folder

        def setup(self, device):
            self.model = load_convnet(self.folder)

        def decode_request(self, request):
            import torch

            return torch.tensor(request["instances"][0], dtype=torch.float32)

        def predict(self, x):
            import torch

            with torch.inference_mode():
                return self.model(x)

        def encode_response(self, output):
            return {"predictions": [output.tolist()]}


def load_convnet(folder: str):
    from safetensors.torch import load_file

    from ember.demo import ConvNet

    model = ConvNet(num_classes=10)
    model.load_state_dict(load_file(str(Path(folder) / "convnet.safetensors")))
    return model.eval()


def prepare(folder: Path):
    """The demo ConvNet (trained for one quick epoch) exported for ember, its weights for the others."""
    import torch
    from safetensors.torch import save_file

    import ember
    from ember.datasets import load_digits
    from ember.demo import ConvNet

    ember.seed(0)
    (x_train, y_train), (x_val, _) = load_digits()
    model = ConvNet(num_classes=10)
    model.compile(torch.optim.AdamW(model.parameters(), lr=2e-3), loss="cross_entropy")
    model.fit(x_train[:512], y_train[:512], epochs=1, batch_size=64, verbose=0)
    ember.deploy.export(model, folder / "digits" / "1", format="onnx", example=torch.from_numpy(x_val[:8]))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "convnet.safetensors"))
    return x_val[:32]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# -- load -------------------------------------------------------------------------------------------
def http_request(path: str, body: bytes, headers: dict | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def requests_for(protocol: str, images: np.ndarray) -> list:
    if protocol == "v2-binary":
        built = []
        for image in images:
            header = orjson.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                               "parameters": {"binary_data_size": image.nbytes}}],
                                   "parameters": {"binary_data_output": True}})
            built.append(http_request("/v2/models/digits/infer", header + image.tobytes(),
                                      {"Inference-Header-Content-Length": len(header)}))
        return built
    path = "/v1/models/digits:predict" if protocol == "tf-json" else "/predict"
    return [http_request(path, orjson.dumps({"instances": [image.tolist()]})) for image in images]


async def one_client(port: int, requests: list, offset: int, phases: dict, latencies: list, errors: list):
    reader, writer = await asyncio.open_connection(HOST, port)
    i = offset
    while time.perf_counter() < phases["end"]:
        started = time.perf_counter()
        try:
            writer.write(requests[i % len(requests)])
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            ok = head.startswith(b"HTTP/1.1 200")
        except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
            ok = False
            writer.close()
            reader, writer = await asyncio.open_connection(HOST, port)
        if started >= phases["measure"]:
            (latencies if ok else errors).append(time.perf_counter() - started)
        i += 1
    writer.close()


async def load(port: int, requests: list, clients: int, warmup: float, duration: float, server: psutil.Process):
    now = time.perf_counter()
    phases = {"measure": now + warmup, "end": now + warmup + duration}
    latencies, errors = [], []
    tasks = [asyncio.ensure_future(one_client(port, requests, c, phases, latencies, errors)) for c in range(clients)]
    await asyncio.sleep(warmup)
    cpu_before = process_tree_cpu(server)
    await asyncio.gather(*tasks)
    cpu = process_tree_cpu(server) - cpu_before
    done = len(latencies)
    lat = np.array(latencies or [float("nan")]) * 1e3
    return {"req/s": done / duration, "p50 ms": np.percentile(lat, 50), "p99 ms": np.percentile(lat, 99),
            "errors": len(errors), "cpu ms/req": cpu * 1e3 / max(done, 1)}


def process_tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def start(command: list, port: int, ready_path: str) -> subprocess.Popen:
    import httpx

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}{ready_path}", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"{command} was not ready in 180 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds before each run")
    parser.add_argument("--clients", default="64,8", help="concurrent clients, comma-separated")
    parser.add_argument("--only", default="ember,baseline,litserve", help="servers to run, comma-separated")
    parser.add_argument("--role", choices=["baseline", "litserve"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        return {"baseline": serve_baseline, "litserve": serve_litserve}[args.role](args.folder, args.port)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"CPU: {cpu} ({os.cpu_count()} cores), Python {platform.python_version()}; "
          f"{args.duration:g} s per run after {args.warmup:g} s warm-up; loopback only")
    folder = Path(tempfile.mkdtemp(prefix="ember-serve-load-"))
    images = prepare(folder)
    me, ember_cli = [sys.executable, __file__], [sys.executable, "-m", "ember.cli", "serve", str(folder)]
    servers = []  # (label, command builder, ready path, protocols)
    wanted = args.only.split(",")
    if "ember" in wanted:
        servers += [("ember serve, batching", lambda p: [*ember_cli, "--port", str(p), "--max-batch-size", "64",
                                                           "--log-level", "warning"], "/v2/health/ready",
                     ["tf-json", "v2-binary"]),
                    ("ember serve, no batching", lambda p: [*ember_cli, "--port", str(p), "--no-batching",
                                                              "--log-level", "warning"], "/v2/health/ready",
                     ["tf-json", "v2-binary"])]
    if "baseline" in wanted:
        servers.append(("FastAPI + eager torch", lambda p: [*me, "--role", "baseline", "--folder", str(folder),
                                                            "--port", str(p)], "/docs", ["json"]))
    if "litserve" in wanted and ls is None:
        print("LitServe is not installed (pip install -e .[bench]); skipping it")
    elif "litserve" in wanted:
        servers.append(("LitServe, max_batch_size=64", lambda p: [*me, "--role", "litserve", "--folder",
                                                                  str(folder), "--port", str(p)], "/health", ["json"]))
    rows = []
    for label, command, ready, protocols in servers:
        port = free_port()
        process = start(command(port), port, ready)
        try:
            for protocol in protocols:
                for clients in [int(c) for c in args.clients.split(",")]:
                    result = asyncio.run(load(port, requests_for(protocol, images), clients, args.warmup,
                                              args.duration, psutil.Process(process.pid)))
                    rows.append((label, protocol, clients, result))
                    print(f"{label:28} {protocol:10} {clients:3} clients  " + "  ".join(
                        f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()), flush=True)
        finally:
            process.terminate()
            process.wait(30)
    print("\n| server | protocol | clients | req/s | p50 ms | p99 ms | errors | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|")
    for label, protocol, clients, r in rows:
        print(f"| {label} | {protocol} | {clients} | {r['req/s']:.0f} | {r['p50 ms']:.1f} | {r['p99 ms']:.1f} | "
              f"{r['errors']} | {r['cpu ms/req']:.2f} |")


if __name__ == "__main__":
    main()
