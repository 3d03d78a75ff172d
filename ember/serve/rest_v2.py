"""KServe v2 / Open Inference Protocol REST API with Triton's binary tensor data extension.

Binary extension: the body is a JSON header of `Inference-Header-Content-Length` bytes followed by the raw
tensors of the inputs whose parameters carry `binary_data_size`, in order (little-endian, row-major; BYTES
elements as a 4-byte length then the bytes). Outputs come back the same way when asked for with
`binary_data` (per output) or `binary_data_output` (per request), as tritonclient.http does by default.
"""
import math
import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ember.serve.errors import BadRequest
from ember.serve.httpio import ERROR_RESPONSES, json_array, json_response, parse_json, read_body
from ember.serve.offload import decode_off_loop
from ember.serve.untrusted import decimal_int, tensor_shape
from ember.signature import NUMPY_TO_V2, V2_DATATYPES
from ember.untrusted import is_int, short_repr

_HEADER_LENGTH = "inference-header-content-length"
_TENSOR = {"type": "object", "required": ["name", "shape", "datatype"],
           "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
                          "datatype": {"type": "string", "enum": list(V2_DATATYPES)}, "data": {},
                          "parameters": {"type": "object"}}}
_INFER_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["inputs"],
    "properties": {"id": {"type": "string"}, "inputs": {"type": "array", "items": _TENSOR},
                   "outputs": {"type": "array", "items": {"type": "object", "properties": {
                       "name": {"type": "string"}, "parameters": {"type": "object"}}}},
                   "parameters": {"type": "object"}}}}}}}


def router(dataplane, max_body_bytes: int) -> APIRouter:
    api = APIRouter(tags=["KServe v2 (Open Inference Protocol)"], responses=ERROR_RESPONSES)

    @api.get("/v2", summary="Server metadata")
    async def server_metadata():
        return {"name": "ember", "version": "1", "extensions": ["binary_tensor_data"]}

    @api.get("/v2/health/live", summary="Liveness")
    async def live():
        return {"live": dataplane.live()}

    @api.get("/v2/health/ready", summary="Readiness: every model has an available version")
    async def ready():
        is_ready = dataplane.ready()
        return json_response({"ready": is_ready}, 200 if is_ready else 503)

    @api.get("/v2/models/{name}", summary="Metadata of the default version")
    async def metadata(name: str):
        return _metadata(dataplane, dataplane.model(name))

    @api.get("/v2/models/{name}/versions/{version}", summary="Metadata of one version")
    async def version_metadata(name: str, version: str):
        return _metadata(dataplane, dataplane.model(name, version=version))

    @api.get("/v2/models/{name}/ready", summary="Readiness of the default version")
    async def model_ready(name: str):
        return {"name": name, "ready": dataplane.model(name) is not None}

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="Readiness of one version")
    async def version_ready(name: str, version: str):
        return {"name": name, "ready": dataplane.model(name, version=version) is not None}

    @api.post("/v2/models/{name}/infer", summary="Infer with the default version", openapi_extra=_INFER_BODY)
    async def infer(name: str, request: Request):
        return await _infer(dataplane, dataplane.model(name), request, max_body_bytes)

    @api.post("/v2/models/{name}/versions/{version}/infer", summary="Infer with one version",
              openapi_extra=_INFER_BODY)
    async def infer_version(name: str, version: str, request: Request):
        return await _infer(dataplane, dataplane.model(name, version=version), request, max_body_bytes)

    return api


async def _infer(dataplane, served, request: Request, max_body_bytes: int) -> Response:
    body = await read_body(request, max_body_bytes)
    payload, inputs, texts = await decode_off_loop(len(body), _decode_request, dataplane, served, body,
                                                   request.headers.get(_HEADER_LENGTH))
    if texts is not None:
        outputs = await dataplane.classify_text(served, texts, "v2")
    else:
        outputs = await dataplane.infer(served, inputs, "v2")
    return _encode_outputs(served, payload, outputs)


@dataclass(frozen=True)
class _Declared:
    """One entry of "inputs" as the client declared it, checked before any of its values is read."""
    name: str
    datatype: str
    dtype: np.dtype
    shape: tuple
    entry: dict


def _decode_request(dataplane, served, body: bytes, header_length: str | None) -> tuple:
    """(payload, {name: array}, None), or (payload, None, strings) for raw text to a text classifier.
    Every declared name, datatype and shape is checked against the signature before a value is decoded."""
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        size = decimal_int(header_length)
        if size is None or size > len(body):
            raise BadRequest(f"Inference-Header-Content-Length: expected the JSON header's size in bytes "
                             f"(at most the body's {len(body)}), got {header_length[:40]!r}")
        header, binary = memoryview(body)[:size], memoryview(body)[size:]
    payload = parse_json(header, 'an object {"inputs": [{"name", "shape", "datatype", "data"}]}')
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise BadRequest('expected a JSON object with "inputs": a non-empty list of {name, shape, datatype, data}')
    takes = len(served.signature.inputs)
    if len(payload["inputs"]) > takes:  # before reading each of (maybe) hundreds of thousands
        raise BadRequest(f"model {served.name!r} takes {takes} input(s) "
                         f"({', '.join(served.signature.input_names)}); got {len(payload['inputs'])}")
    declared = [_declare(entry, len(body)) for entry in payload["inputs"]]
    twice = sorted(name for name, count in Counter(d.name for d in declared).items() if count > 1)
    if twice:
        raise BadRequest(f"each input may appear once; got {short_repr(twice)} twice")
    if served.text is not None and len(declared) == 1 and declared[0].datatype == "BYTES":
        text = declared[0]
        if len(text.shape) != 1:
            raise BadRequest(f"input {text.name!r}: raw strings for a text classifier: expected shape [n], "
                             f"got {list(text.shape)}")
        dataplane.check_text_rows(served, text.shape[0])
        return payload, None, _decode_values(declared, binary)[text.name].tolist()
    _check_bytes_inputs(served, declared)
    dataplane.check_layout(served, {d.name: (d.dtype, d.shape) for d in declared})
    return payload, _decode_values(declared, binary), None


def _declare(entry, max_elements: int) -> _Declared:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise BadRequest('each input must be an object with "name", "shape", "datatype" and "data"')
    name, datatype = entry["name"], entry.get("datatype")
    if not isinstance(datatype, str) or datatype not in V2_DATATYPES:
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}; expected one of {', '.join(V2_DATATYPES)}")
    # A body of n bytes holds at most n elements (BYTES ones take 4 bytes or more).
    shape = tensor_shape(entry.get("shape"), f"input {name!r}", max_elements)
    return _Declared(name, datatype, V2_DATATYPES[datatype], shape, entry)


def _check_bytes_inputs(served, declared: list):
    takes = {spec.name: spec.dtype for spec in served.signature.inputs}
    for d in declared:
        if d.datatype == "BYTES" and d.name in takes and takes[d.name] != object:
            hint = " (raw strings go alone, as one input)" if served.text is not None else \
                " (strings are accepted only by text classifiers exported with a tokenizer)"
            raise BadRequest(f"input {d.name!r}: expected {NUMPY_TO_V2.get(takes[d.name], takes[d.name].name)} "
                             f"values, got BYTES{hint}")


def _decode_values(declared: list, binary: memoryview) -> dict:
    arrays, offset = {}, 0
    for d in declared:
        name, dtype, count = d.name, d.dtype, math.prod(d.shape)
        size = _parameters(d.entry).get("binary_data_size")
        if size is not None:
            if not is_int(size) or size < 0 or offset + size > len(binary):
                raise BadRequest(f"input {name!r}: binary_data_size {size!r} does not fit the "
                                 f"{len(binary) - offset} binary bytes left in the body")
            chunk, offset = binary[offset:offset + size], offset + size
            if dtype == object:
                array = np.array(_unpack_bytes(chunk, name, count), dtype=object)
            elif size != count * dtype.itemsize:
                raise BadRequest(f"input {name!r}: shape {list(d.shape)} of {d.datatype} needs "
                                 f"{count * dtype.itemsize} bytes, got binary_data_size {size}")
            else:
                array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
        elif "data" in d.entry:
            data = d.entry["data"]
            array = _json_strings(data, name) if dtype == object else json_array(data, name)
            array = array.reshape(-1) if array.ndim != 1 else array
        else:
            raise BadRequest(f"input {name!r}: expected \"data\" or parameters.binary_data_size")
        if array.size != count:
            raise BadRequest(f"input {name!r}: shape {list(d.shape)} holds {count} elements, got {array.size}")
        if dtype == object and not all(isinstance(v, (str, bytes)) for v in array):
            raise BadRequest(f"input {name!r}: BYTES data must be strings")
        arrays[name] = array.reshape(d.shape)
    if offset != len(binary):
        raise BadRequest(f"the body has {len(binary) - offset} binary bytes that no input's binary_data_size claims")
    return arrays


def _parameters(entry: dict) -> dict:
    parameters = entry.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


def _json_strings(data, name: str) -> np.ndarray:
    try:
        return np.array(data, dtype=object)
    except (ValueError, TypeError) as error:  # nesting deeper than numpy's 64 dimensions
        raise BadRequest(f"input {name!r}: expected BYTES data as a (nested) list of strings ({error})") from None


def _unpack_bytes(chunk: memoryview, name: str, count: int) -> list:
    """Length-prefixed elements; stops at the declared `count`, so a body of tiny elements costs no more
    than its shape said."""
    values, position = [], 0
    while position < len(chunk):
        if len(values) == count:
            raise BadRequest(f"input {name!r}: binary_data_size holds more than the {count} BYTES elements "
                             f"its shape declares")
        if position + 4 > len(chunk):
            raise BadRequest(f"input {name!r}: truncated BYTES element length")
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        if position + length > len(chunk):
            raise BadRequest(f"input {name!r}: BYTES element of {length} bytes runs past binary_data_size")
        values.append(bytes(chunk[position:position + length]).decode("utf-8", errors="replace"))
        position += length
    return values


def _encode_outputs(served, payload: dict, outputs: dict) -> Response:
    binary_default = _parameters(payload).get("binary_data_output") is True
    requested = payload.get("outputs")
    if requested is None:
        wanted = [(name, binary_default) for name in outputs]
    elif isinstance(requested, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested):
        unknown = [o["name"] for o in requested if o["name"] not in outputs]
        if unknown:
            raise BadRequest(f"unknown output(s) {short_repr(unknown)}; this model has {list(outputs)}")
        # Each at most once: an output asked for 100,000 times in a few bytes each would be sent as often.
        twice = sorted(name for name, count in Counter(o["name"] for o in requested).items() if count > 1)
        if twice:
            raise BadRequest(f"each output may be asked for once; got {twice} more than once")
        wanted = [(o["name"], _parameters(o).get("binary_data", binary_default) is True) for o in requested]
    else:
        raise BadRequest('"outputs": expected a list of {"name": output name, "parameters": {...}}')
    tensors, buffers = [], []
    for name, as_binary in wanted:
        array = outputs[name]
        tensor = {"name": name, "datatype": NUMPY_TO_V2[array.dtype], "shape": array.shape}
        if as_binary:
            data = _pack_bytes(array) if array.dtype == object else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(data)}
            buffers.append(data)
        else:
            tensor["data"] = array.reshape(-1).tolist() if array.dtype == object else np.ascontiguousarray(array).reshape(-1)
        tensors.append(tensor)
    result = {"model_name": served.name, "model_version": str(served.version), "outputs": tensors}
    if isinstance(payload.get("id"), str):
        result["id"] = payload["id"]
    if not buffers:
        return json_response(result)
    header = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(b"".join([header, *buffers]), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})


def _pack_bytes(array: np.ndarray) -> bytes:
    parts = []
    for value in array.reshape(-1):
        encoded = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        parts += [struct.pack("<I", len(encoded)), encoded]
    return b"".join(parts)


def _metadata(dataplane, served) -> dict:
    table = dataplane.repository.models.get(served.name)
    versions = sorted(table.versions) if table else [served.version]

    def tensors(specs):
        return [{"name": s.name, "datatype": NUMPY_TO_V2.get(s.dtype, "BYTES"), "shape": list(s.shape)}
                for s in specs]

    return {"name": served.name, "versions": [str(v) for v in versions],
            "platform": served.runtime.platform,
            "inputs": tensors(served.signature.inputs), "outputs": tensors(served.signature.outputs)}
