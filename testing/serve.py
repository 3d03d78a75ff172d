"""For tests of ember serve: tiny exported models, the app called in-process, a real server on a loopback
port."""
import asyncio
import atexit
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch
from torch import nn

from ember.signature import write_signature


class TinyClassifier(nn.Module):
    """4 features -> 3 classes: small enough to export in a few seconds."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


class TinyTextClassifier(nn.Module):
    """Mean-pooled embeddings -> 2 classes, with the HF-style inputs input_ids and attention_mask."""

    def __init__(self, vocab_size: int):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab_size, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled)


def export_classifier(model: nn.Module, folder, example: torch.Tensor, labels=None, program: bool = False):
    """`ember.deploy.export` of a one-input classifier: model.onnx (+ model.pt2 when `program`), signature.json."""
    from ember.deploy import export

    export(model, folder, format=["onnx", "program"] if program else "onnx", example=example,
           signature={"labels": labels})
    return model.eval()


def export_tiny_classifier(folder, seed: int = 0, program: bool = False) -> nn.Module:
    return export_classifier(TinyClassifier(seed), folder, torch.randn(7, 4), ["a", "b", "c"], program)


def export_tiny_text_classifier(folder) -> nn.Module:
    """A text classifier with a word-level tokenizer.json, exported as HF classifiers are (contract)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "great", "movie", "awful", "film", "boring", "fun", "the", "a"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    model = TinyTextClassifier(len(words)).eval()
    ids = torch.randint(0, len(words), (3, 5))
    dims = {0: torch.export.Dim("batch", min=1, max=4096), 1: torch.export.Dim("sequence", min=1, max=512)}
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(folder / "model.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_shapes={"input_ids": dims, "attention_mask": dims}, dynamo=True,
                      external_data=False)
    spec = {"dtype": "int64", "shape": [-1, -1]}
    write_signature(folder, [{"name": "input_ids", **spec}, {"name": "attention_mask", **spec}],
                    [{"name": "logits", "dtype": "float32", "shape": [-1, 2]}], task="text_classification",
                    labels=["negative", "positive"], output_kind="logits",
                    tokenizer={"file": "tokenizer.json", "max_length": 16})
    return model


@functools.cache
def exported(kind: str, seed: int = 0) -> Path:
    """An export folder made once per process: "tiny" (onnx + pt2) or "text"; copy it, never modify it."""
    folder = Path(_cache_dir()) / f"{kind}-{seed}"
    if kind == "tiny":
        export_tiny_classifier(folder, seed=seed, program=True)
    elif kind == "text":
        export_tiny_text_classifier(folder)
    else:
        raise ValueError(f"unknown test export {kind!r}: expected 'tiny' or 'text'")
    return folder


def model_repository(root, models=("tiny", "text")) -> Path:
    """A repository root/KIND/1/ holding a copy of `exported(KIND)` for each kind; returns root."""
    root = Path(root)
    for kind in models:
        shutil.copytree(exported(kind), root / kind / "1")
    return root


@functools.cache
def _cache_dir() -> str:
    directory = tempfile.mkdtemp(prefix="ember-serve-exports-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


class InProcessApp:
    """`create_app(path, config)` called in this process on one event loop, without a socket or lifespan
    (no repository polling): thousands of requests a second, for fuzzing. A context manager."""

    def __init__(self, path, config):
        from ember.serve.app import create_app

        self.app = create_app(path, config)
        self._runner = asyncio.Runner()

    def request(self, method: str, path: str, body: bytes = b"", headers=()) -> tuple:
        """(status, {header name: value}, body bytes); `headers` as (name, value) pairs of str or bytes."""
        return self._runner.run(self._call(method, path, body, headers))

    async def _call(self, method, path, body, headers):
        raw = [(_latin1(name).lower(), _latin1(value)) for name, value in headers]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": raw, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8501)}
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        answer = {"status": None, "headers": {}, "body": []}

        async def receive():
            return messages.pop() if messages else {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = {k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]}
            else:
                answer["body"].append(message.get("body", b""))

        await self.app(scope, receive, send)
        return answer["status"], answer["headers"], b"".join(answer["body"])

    def close(self):
        self.app.state.dataplane.repository.close()
        self._runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _latin1(text) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackToBackClients:
    """`count` keep-alive clients posting `body` (JSON) to `path` back to back until the context ends.
    `answers` holds `record(started, seconds, answer)` of each request, the answer an httpx.Response or the
    httpx.HTTPError it ended in; subclasses record what their test needs."""

    def __init__(self, url: str, path: str, body, count: int = 2):
        self.url, self.path, self.body, self.answers = url, path, body, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send) for _ in range(count)]

    def record(self, started: float, seconds: float, answer):
        return started, seconds, answer

    def _send(self):
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = client.post(self.path, json=self.body)
                except httpx.HTTPError as error:
                    answer = error
                self.answers.append(self.record(started, time.monotonic() - started, answer))

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join()


class ServerProcess:
    """`ember serve` in a subprocess on a free loopback port; a context manager that stops it."""

    def __init__(self, path, *args, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "ember.cli", "serve", str(path), "--port", str(self.port), *args]
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ember serve exited with {self.process.returncode}:\n{self.process.stdout.read()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"ember serve was not ready within {timeout}s")

    def stop(self, timeout: float = 20.0) -> str:
        """SIGTERM, wait, return the server's output."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.stdout.read()

    def __enter__(self):
        return self.wait_ready()

    def __exit__(self, *exc):
        self.stop()
