"""`ember serve --config FILE`: a JSON file of server settings and per-model overrides.

{
  "max_body_bytes": 16777216,          # larger request bodies are answered 413
  "max_header_bytes": 65536,           # a larger request head (request line + headers) is answered 431
  "header_timeout_seconds": 10.0,      # a request head must arrive within this long of the connection opening
                                       # (or of its first byte, on a kept-alive connection), else 408 and closed
  "body_timeout_seconds": 60.0,        # a request body must arrive within this long of its head, else closed
  "max_connections": 1000,             # open connections at most; past it a new one is answered 503 and closed
                                       # (the soft open-files limit is raised to hold them, see http_limits.py)
  "poll_seconds": 1.0,                 # how often the repository is scanned for new versions
  "batching": {"enabled": true, "max_batch_size": 32, "batch_timeout_micros": 1000,
               "max_enqueued_batches": 64, "num_batch_threads": 1},
  "runtime": "onnx",                   # or "torch" (model.pt2); default: onnx when model.onnx exists
  "intra_op_threads": 0,               # the server's runtime threads per call; 0 lets the runtime decide
  "allow_nonfinite": false,            # NaN/inf inputs are rejected unless true
  "models": {"NAME": {"batching": {...}, "runtime": ..., "intra_op_threads": ..., "allow_nonfinite": ...,
                      "version_labels": {"stable": 1, "canary": 2}}}
}

The four HTTP limits have command-line flags of the same names (--max-header-bytes, --header-timeout-seconds,
--body-timeout-seconds, --max-connections), as the batching options do; a flag wins over the file.

intra_op_threads: torch has one intra-op thread setting for the whole process, so the top-level value is
the server's: every model on the torch runtime runs with it (set once, by the first torch model to load;
a server of ONNX models only never imports torch). Each ONNX Runtime session has its own threads, so a
model's own "intra_op_threads" applies to its ONNX sessions; on the torch runtime a model's own value that
differs from the server's is an error when the version loads (its status END names both), rather than a
setting silently applied to, or taken from, every other model. torch's inter-op threads are left as they
are: a torch.export program runs its operators one after another, never on that pool.
"""
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ember.serve.batching import BatchingOptions
from ember.serve.http_limits import HttpLimits
from ember.untrusted import is_int

_MODEL_KEYS = ("batching", "runtime", "intra_op_threads", "allow_nonfinite", "version_labels")
_HTTP_KEYS = tuple(f.name for f in dataclasses.fields(HttpLimits))
_SERVER_KEYS = ("max_body_bytes", *_HTTP_KEYS, "poll_seconds", "models") + _MODEL_KEYS[:-1]


@dataclass(frozen=True)
class ModelConfig:
    batching: BatchingOptions = BatchingOptions()
    runtime: str | None = None
    intra_op_threads: int = 0
    allow_nonfinite: bool = False
    version_labels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ServeConfig:
    max_body_bytes: int = 16 * 1024 * 1024
    http: HttpLimits = HttpLimits()  # the HTTP server's limits, read from the top-level keys of the same names
    poll_seconds: float = 1.0
    defaults: ModelConfig = ModelConfig()
    models: dict = field(default_factory=dict)  # name -> ModelConfig

    def for_model(self, name: str) -> ModelConfig:
        return self.models.get(name, self.defaults)

    @property
    def intra_op_threads(self) -> int:
        """The server's (the top-level key): torch's threads for the whole process, see the module docstring."""
        return self.defaults.intra_op_threads


def load_config(path=None, **flags) -> ServeConfig:
    """Read the JSON config file (if any); command-line flags (batching options and HTTP limits, by their
    names; None when not given) override it."""
    raw = {}
    if path is not None:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON: {error}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"config file {path}: expected a JSON object with keys {', '.join(_SERVER_KEYS)}")
    _check_keys(raw, _SERVER_KEYS, "the config file")
    given = {name: value for name, value in flags.items() if value is not None}
    http = HttpLimits(**{name: given.pop(name, raw.get(name, getattr(HttpLimits, name))) for name in _HTTP_KEYS})
    batching = {**raw.get("batching", {}), **given}
    defaults = _model_config({**raw, "batching": batching}, ModelConfig(), "the config file")
    models = raw.get("models", {})
    if not isinstance(models, dict):
        raise ValueError("config \"models\": expected an object {model name: settings}")
    max_body_bytes = raw.get("max_body_bytes", ServeConfig.max_body_bytes)
    if not is_int(max_body_bytes) or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be an integer >= 1, got {max_body_bytes!r}")
    return ServeConfig(
        max_body_bytes=max_body_bytes, http=http,
        poll_seconds=float(raw.get("poll_seconds", ServeConfig.poll_seconds)), defaults=defaults,
        models={name: _model_config(_check_keys(settings, _MODEL_KEYS, f"config model {name!r}"), defaults,
                                    f"config model {name!r}") for name, settings in models.items()})


def _model_config(raw: dict, base: ModelConfig, where: str) -> ModelConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object with keys {', '.join(_MODEL_KEYS)}")
    batching = raw.get("batching", {})
    _check_keys(batching, [f.name for f in dataclasses.fields(BatchingOptions)], f"{where} batching")
    labels = raw.get("version_labels", base.version_labels)
    if not all(isinstance(v, int) for v in labels.values()):
        raise ValueError(f"{where} version_labels: expected {{label: version number}}, got {labels!r}")
    return ModelConfig(
        batching=dataclasses.replace(base.batching, **batching), runtime=raw.get("runtime", base.runtime),
        intra_op_threads=int(raw.get("intra_op_threads", base.intra_op_threads)),
        allow_nonfinite=bool(raw.get("allow_nonfinite", base.allow_nonfinite)), version_labels=dict(labels))


def _check_keys(raw: dict, known, where: str):
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object with keys {', '.join(known)}, got {raw!r}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; expected {', '.join(known)}")
    return raw
