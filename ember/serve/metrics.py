"""Prometheus metrics per model and version: requests, errors, latency, batch sizes, queue depth."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """One registry per server, so several servers in one process (tests) never share counters."""

    def __init__(self):
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        self.requests = Counter("ember_requests", "Inference requests", labels + ("protocol",),
                                registry=self.registry)
        self.errors = Counter("ember_request_errors", "Inference requests answered with an error",
                              labels + ("code",), registry=self.registry)
        self.latency = Histogram("ember_request_latency_seconds", "Inference request latency in the server",
                                 labels, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("ember_batch_size", "Rows per runtime call", labels,
                                    buckets=_BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("ember_queue_depth", "Rows waiting to be batched", labels,
                                 registry=self.registry)

    def for_version(self, model: str, version: int) -> "VersionMetrics":
        return VersionMetrics(self, model, str(version))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class VersionMetrics:
    """The labelled children of one model version, looked up once rather than on every request."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str):
        self._metrics, self._labels = metrics, (model, version)
        self.requests = {p: metrics.requests.labels(model, version, p) for p in ("v1", "v2")}
        self.latency = metrics.latency.labels(model, version)
        self.batch_size = metrics.batch_size.labels(model, version)
        self.queue_depth = metrics.queue_depth.labels(model, version)

    def error(self, code: int):
        self._metrics.errors.labels(*self._labels, str(code)).inc()
