"""The data plane both protocols share: find the model version, check inputs against its signature,
run them through its batcher, count everything. Routes decode and encode; nothing here knows HTTP."""
import logging
import time

import numpy as np

from ember.serve.batching import QueueFull
from ember.serve.errors import BadRequest, InternalError, ServeError, Unavailable, last_line
from ember.serve.offload import decode_off_loop
from ember.serve.runtime import InputRejected
from ember.serve.untrusted import decimal_int
from ember.untrusted import short_repr

log = logging.getLogger("ember.serve")

# Which numpy kinds a request's values may have for each kind the model takes (JSON numbers are
# int64/float64/bool; binary tensors must match exactly, which the v2 route checks).
_ACCEPTED_KINDS = {"f": "fiub", "i": "iub", "u": "iub", "b": "b"}


def parse_version(version: str | None) -> int | None:
    """A URL's version segment: digits only, as TF Serving's version numbers are (int() would also
    take "+1", " 1", "1_0" as 1, 1 and 10)."""
    if version is None:
        return None
    number = decimal_int(version)
    if number is None:
        raise BadRequest(f"a model version is a non-negative integer (digits only), got {version!r}")
    return number


class DataPlane:
    def __init__(self, repository, metrics):
        self.repository = repository
        self.metrics = metrics

    # -- health and metadata -------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready()

    def model(self, name: str, version: str | None = None, label: str | None = None):
        return self.repository.get(name, parse_version(version), label)

    def statuses(self, name: str, version: str | None = None, label: str | None = None) -> list:
        return self.repository.statuses(name, parse_version(version), label)

    # -- inference -----------------------------------------------------------------------------------
    async def infer(self, served, inputs: dict, protocol: str) -> dict:
        """Named arrays in (any JSON-compatible dtype), the model's named output arrays out."""
        started = time.perf_counter()
        metrics = served.metrics
        metrics.requests[protocol].inc()
        try:
            arrays, rows = self._conform(served, inputs)
            return await self._run(served, arrays, rows)
        except ServeError as error:
            metrics.error(error.status)
            raise
        finally:
            metrics.latency.observe(time.perf_counter() - started)

    async def classify_text(self, served, texts: list, protocol: str) -> dict:
        """Raw strings in, {"label": labels, "probabilities": rows} out (text classifiers only)."""
        if served.text is None:
            raise BadRequest(f"model {served.name!r} takes {self._expected(served)}; raw strings are accepted "
                             f"only by text classifiers exported with a tokenizer")
        if not texts or not all(isinstance(t, str) for t in texts):
            raise BadRequest("expected a non-empty list of strings")
        self.check_text_rows(served, len(texts))
        inputs = await decode_off_loop(sum(map(len, texts)), served.text.encode, texts)
        return served.text.decode(await self.infer(served, inputs, protocol))

    @staticmethod
    def check_text_rows(served, rows: int):
        """Tokenizing pads every string to the longest (up to the tokenizer's max_length): a request of
        millions of one-character strings would take gigabytes. A request carries at most the rows its
        model's queue holds."""
        if rows > served.batcher.capacity:
            raise BadRequest(f"model {served.name!r}: expected at most {served.batcher.capacity} strings per "
                             f"request (max_enqueued_batches x max_batch_size), got {rows}")

    async def _run(self, served, arrays: dict, rows: int) -> dict:
        try:
            return await served.batcher.submit(arrays, rows)
        except QueueFull as error:
            raise Unavailable(f"model {served.name!r} version {served.version}: {error}") from None
        except ServeError:
            raise
        except InputRejected as error:  # the runtime refused this input's values (e.g. a token id out of range)
            raise BadRequest(f"model {served.name!r} could not run on this input: {error}") from None
        except Exception as error:  # the model failed on an input it was checked to take at load: ours to fix
            message = f"model {served.name!r} version {served.version} failed: {last_line(error)}"
            log.error("%s (%s)", message, type(error).__name__)
            raise InternalError(message) from None

    def check_layout(self, served, layouts: dict) -> int:
        """What needs no values, on {input name: (dtype, shape)}: names, dtype kinds, ranks, fixed dimensions,
        rows. Returns the number of rows. A protocol that declares dtypes and shapes (v2) calls it before
        decoding a single value, so a wrong request costs nothing; `infer` calls it again on the arrays."""
        signature = served.signature
        missing = [n for n in signature.input_names if n not in layouts]
        unknown = [n for n in layouts if n not in signature.input_names]
        if missing or unknown:
            raise BadRequest(f"model {served.name!r} takes inputs {self._expected(served)}; "
                             f"missing {short_repr(missing)}, unknown {short_repr(unknown)}")
        rows = None
        for spec in signature.inputs:
            dtype, shape = layouts[spec.name]
            if dtype.kind not in _ACCEPTED_KINDS.get(spec.dtype.kind, spec.dtype.kind):
                raise BadRequest(f"input {spec.name!r}: expected {spec.dtype.name} values, got {dtype.name}"
                                 + (" (non-numeric or ragged data)" if dtype.kind in "OUS" else ""))
            if len(shape) != len(spec.shape) or any(e not in (-1, d) for e, d in zip(spec.shape, shape)):
                raise BadRequest(f"input {spec.name!r}: expected shape {list(spec.shape)} (-1: any size), "
                                 f"got {list(shape)}")
            if shape[0] == 0:
                raise BadRequest(f"input {spec.name!r}: expected at least one row, got none")
            if rows is not None and shape[0] != rows:
                raise BadRequest(f"inputs must have the same number of rows: {rows} and {shape[0]} "
                                 f"({spec.name!r})")
            rows = shape[0]
        for group in served.tied_dimensions:  # e.g. input_ids and attention_mask: one sequence length
            sizes = [layouts[name][1][axis] for name, axis in group]
            if len(set(sizes)) > 1:
                raise BadRequest("the model takes one size for " + ", ".join(
                    f"{name!r} dimension {axis}" for name, axis in group) + f"; got {sizes}")
        return rows

    def _conform(self, served, inputs: dict) -> tuple:
        rows = self.check_layout(served, {name: (array.dtype, array.shape) for name, array in inputs.items()})
        arrays = {}
        for spec in served.signature.inputs:
            array = inputs[spec.name]
            if array.dtype != spec.dtype:
                with np.errstate(over="ignore"):
                    array = array.astype(spec.dtype)
            if spec.dtype.kind == "f" and not served.config.allow_nonfinite and not np.isfinite(array).all():
                raise BadRequest(f"input {spec.name!r}: expected finite numbers, got NaN or infinity (values out "
                                 f"of {spec.dtype.name} range count as infinity)")
            arrays[spec.name] = array
        return arrays, rows

    @staticmethod
    def _expected(served) -> str:
        return ", ".join(spec.describe() for spec in served.signature.inputs)
