"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest), a thin adapter over the data plane.

Row format `{"instances": [...]}` -> `{"predictions": [...]}`, columnar `{"inputs": ...}` -> `{"outputs": ...}`;
errors are `{"error": "..."}` with a 4xx status.
"""
from fastapi import APIRouter, Request

from ember.serve.errors import BadRequest
from ember.serve.httpio import ERROR_RESPONSES, json_array, json_response, parse_json, read_body
from ember.serve.offload import decode_off_loop

SIGNATURE_NAME = "serving_default"
_TF_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int64": "DT_INT64",
              "int32": "DT_INT32", "int16": "DT_INT16", "int8": "DT_INT8", "uint8": "DT_UINT8",
              "uint16": "DT_UINT16", "bool": "DT_BOOL", "object": "DT_STRING"}
_PREDICT_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": {"signature_name": {"type": "string"},
                   "instances": {"type": "array", "description": "rows: values, or {input name: value}"},
                   "inputs": {"description": "columns: a value, or {input name: value}"}}}}}}}


def router(dataplane, max_body_bytes: int) -> APIRouter:
    api = APIRouter(tags=["TF Serving REST (v1)"], responses=ERROR_RESPONSES)

    @api.get("/v1/models/{name}", summary="Status of every version")
    async def model_status(name: str):
        return _status(dataplane.statuses(name))

    @api.get("/v1/models/{name}/versions/{version}", summary="Status of one version")
    async def version_status(name: str, version: str):
        return _status(dataplane.statuses(name, version=version))

    @api.get("/v1/models/{name}/labels/{label}", summary="Status of the version a label points to")
    async def label_status(name: str, label: str):
        return _status(dataplane.statuses(name, label=label))

    @api.get("/v1/models/{name}/metadata", summary="Signature of the default version")
    async def metadata(name: str):
        return _metadata(dataplane.model(name))

    @api.get("/v1/models/{name}/versions/{version}/metadata", summary="Signature of one version")
    async def version_metadata(name: str, version: str):
        return _metadata(dataplane.model(name, version=version))

    async def predict(request: Request, served):
        body = await read_body(request, max_body_bytes)
        layout, inputs = await decode_off_loop(len(body), _decode, served, body)
        return json_response(await _predict(dataplane, served, layout, inputs))

    @api.post("/v1/models/{name}:predict", summary="Predict with the default version", openapi_extra=_PREDICT_BODY)
    async def predict_default(name: str, request: Request):
        return await predict(request, dataplane.model(name))

    @api.post("/v1/models/{name}/versions/{version}:predict", summary="Predict with one version",
              openapi_extra=_PREDICT_BODY)
    async def predict_version(name: str, version: str, request: Request):
        return await predict(request, dataplane.model(name, version=version))

    @api.post("/v1/models/{name}/labels/{label}:predict", summary="Predict with a labelled version",
              openapi_extra=_PREDICT_BODY)
    async def predict_label(name: str, label: str, request: Request):
        return await predict(request, dataplane.model(name, label=label))

    return api


def _decode(served, body: bytes) -> tuple:
    """("instances" or "inputs", the inputs): {name: array}, or a list of raw strings for a text classifier."""
    payload = parse_json(body, 'an object with "instances" or "inputs"')
    if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
        raise BadRequest('expected a JSON object with exactly one of "instances" (a list of rows) or '
                         '"inputs" (columns)')
    signature_name = payload.get("signature_name", SIGNATURE_NAME)
    if signature_name not in (SIGNATURE_NAME, ""):
        raise BadRequest(f"unknown signature_name {signature_name!r}: expected {SIGNATURE_NAME!r}")
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest('"instances": expected a non-empty list of rows')
        if isinstance(instances[0], str):
            return "instances", instances
        return "instances", _rows(instances, served.signature.input_names)
    columns = payload["inputs"]
    if isinstance(columns, list) and columns and isinstance(columns[0], str):
        return "inputs", columns
    return "inputs", _columns(columns, served.signature.input_names)


async def _predict(dataplane, served, layout: str, inputs) -> dict:
    if isinstance(inputs, list):  # raw strings
        result = await dataplane.classify_text(served, inputs, "v1")
        if layout == "instances":
            return {"predictions": [{"label": label, "probabilities": row}
                                    for label, row in zip(result["label"].tolist(), result["probabilities"])]}
        return {"outputs": {"label": result["label"].tolist(), "probabilities": result["probabilities"]}}
    outputs = await dataplane.infer(served, inputs, "v1")
    names = served.signature.output_names
    if layout == "inputs":
        return {"outputs": outputs[names[0]] if len(names) == 1 else outputs}
    if len(names) == 1:
        return {"predictions": outputs[names[0]]}
    rows = len(outputs[names[0]])
    return {"predictions": [{name: outputs[name][i] for name in names} for i in range(rows)]}


def _rows(instances: list, input_names: list) -> dict:
    if all(isinstance(row, dict) for row in instances):
        missing = {name for row in instances for name in input_names if name not in row}
        if missing:
            raise BadRequest(f'every instance must name the inputs {input_names}; missing {sorted(missing)}')
        return {name: json_array([row[name] for row in instances], name) for name in input_names}
    if len(input_names) != 1:
        raise BadRequest(f"this model takes several inputs {input_names}: each instance must be an object "
                         f"{{input name: value}}")
    return {input_names[0]: json_array(instances, input_names[0])}


def _columns(columns, input_names: list) -> dict:
    if isinstance(columns, dict):
        return {name: json_array(value, name) for name, value in columns.items()}
    if len(input_names) != 1:
        raise BadRequest(f'this model takes several inputs {input_names}: "inputs" must be an object '
                         f'{{input name: values}}')
    return {input_names[0]: json_array(columns, input_names[0])}


def _status(statuses: list) -> dict:
    return {"model_version_status": [
        {"version": str(s.version), "state": s.state,
         "status": {"error_code": "OK" if s.state == "AVAILABLE" else "UNKNOWN", "error_message": s.error}}
        for s in statuses]}


def _metadata(served) -> dict:
    signature = served.signature

    def tensors(specs, prefix):
        return {spec.name: {"dtype": _TF_DTYPES.get(spec.dtype.name, "DT_INVALID"), "name": f"{prefix}{spec.name}",
                            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape],
                                             "unknown_rank": False}} for spec in specs}

    return {"model_spec": {"name": served.name, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE_NAME: {
                "inputs": tensors(signature.inputs, "serving_default_"), "outputs": tensors(signature.outputs, ""),
                "method_name": "tensorflow/serving/predict"}}}},
            "ember": {"task": signature.task, "labels": signature.labels, "output_kind": signature.output_kind,
                      "accepts_text": served.text is not None}}
