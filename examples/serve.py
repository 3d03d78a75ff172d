"""The seed's "TF Serving — production REST API" block, with ember.

The seed:
    # TF Serving — production REST API
    # docker run -p 8501:8501 \\
    #   --mount type=bind,source=/path/to/saved_model,target=/models/mymodel \\
    #   -e MODEL_NAME=mymodel tensorflow/serving

With ember: export the PyTorch model, `ember serve` the export folder, and query it with TF Serving's REST
protocol and with KServe v2 (here through Triton's stock client, binary tensors). EMBER_QUICK=1: a short fit.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import tritonclient.http as triton

import ember
from ember.datasets import load_digits
from ember.demo import ConvNet

quick = os.environ.get("EMBER_QUICK") == "1"
ember.seed(0)
(x_train, y_train), (x_val, y_val) = load_digits()
model = ConvNet(num_classes=10)
model.compile(torch.optim.AdamW(model.parameters(), lr=2e-3), loss="cross_entropy", metrics=["accuracy"])
model.fit(x_train[:256] if quick else x_train, y_train[:256] if quick else y_train, epochs=1 if quick else 5,
          batch_size=32, verbose=0)

# Models live in a TF-Serving-style repository: NAME/VERSION/ (the export folder).
repository = Path(tempfile.mkdtemp(prefix="ember-serve-example-"))
ember.deploy.export(model, repository / "digits" / "1", format="onnx", example=torch.from_numpy(x_val[:8]),
                    signature={"task": "image_classification", "labels": [str(i) for i in range(10)]})

# The docker run line becomes: ember serve PATH --port 8501 (here a port the system has free, loopback only,
# so the example runs beside anything already on 8501).
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "ember.cli", "serve", str(repository), "--port", str(port)])
url = f"http://127.0.0.1:{port}"
try:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)

    # TF Serving REST: rows in, predictions out (curl -d '{"instances": [...]}' .../v1/models/digits:predict)
    images = x_val[:16]
    answer = httpx.post(f"{url}/v1/models/digits:predict", json={"instances": images.tolist()}).json()
    tf_labels = np.argmax(answer["predictions"], axis=1)
    print(f"TF Serving REST: {np.mean(tf_labels == y_val[:16]):.0%} of 16 digits right, "
          f"status {httpx.get(f'{url}/v1/models/digits').json()['model_version_status'][0]['state']}")

    # KServe v2 with the stock Triton client: binary tensors both ways.
    client = triton.InferenceServerClient(url=f"127.0.0.1:{port}")
    tensor = triton.InferInput("input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    v2_labels = client.infer("digits", [tensor]).as_numpy("output").argmax(axis=1)
    print(f"KServe v2 (tritonclient, binary): same labels as TF Serving REST: {bool((v2_labels == tf_labels).all())}")
    client.close()
finally:
    server.terminate()  # SIGTERM: in-flight requests finish, then the server exits
    server.wait(30)
