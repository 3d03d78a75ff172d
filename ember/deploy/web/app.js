// ember's browser bundle: signature.json + model.onnx run by onnxruntime-web (wasm backend, no CDN);
// text classifiers also get tokenizer.json, tokenized here by tokenizer.js.
"use strict";

const folder = new URL("./", location.href).href;
ort.env.wasm.wasmPaths = folder;  // the .wasm and .mjs files copied beside this page
// Several threads need cross-origin isolation headers; a plain static server gets one thread.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const $ = (id) => document.getElementById(id);

const ember = {
  signature: null,
  session: null,
  tokenizer: null,

  async load() {
    this.signature = await (await fetch(folder + "signature.json")).json();
    if (this.signature.tokenizer) {
      const config = await (await fetch(folder + this.signature.tokenizer.file)).json();
      this.tokenizer = new WordPieceTokenizer(config);
    }
    this.session = await ort.InferenceSession.create(folder + "model.onnx", { executionProviders: ["wasm"] });
  },

  // Text classifiers: raw strings -> [{label, index, probabilities}], one per text.
  async classifyTexts(texts) {
    const outputs = await this.run(this.tokenizer.encodeBatch(texts));
    const { dims, data } = outputs[this.signature.outputs[0].name];
    const labels = this.signature.labels || Array.from({ length: dims[1] }, (_, i) => String(i));
    const results = texts.map((_, row) => {
      const probabilities = softmax(data.slice(row * dims[1], (row + 1) * dims[1]));
      const index = probabilities.indexOf(Math.max(...probabilities));
      return { index, label: labels[index], probabilities };
    });
    showClassification(results[0], labels);
    return results;
  },

  // Run the model; feeds = {name: {data: TypedArray | nested array, shape: [...]}} or nested arrays.
  async run(feeds) {
    const tensors = {};
    for (const spec of this.signature.inputs) {
      const value = feeds[spec.name];
      if (value === undefined) throw new Error(`missing input "${spec.name}"`);
      tensors[spec.name] = toTensor(value, spec);
    }
    const results = await this.session.run(tensors);
    const outputs = {};
    for (const spec of this.signature.outputs) {
      outputs[spec.name] = { dims: results[spec.name].dims, data: Array.from(results[spec.name].data, Number) };
    }
    return outputs;
  },

  // Classify one image given as a flat Float32Array in the model's input layout (no batch axis).
  async classify(pixels) {
    const spec = this.signature.inputs[0];
    const shape = [1, ...spec.shape.slice(1)];
    const outputs = await this.run({ [spec.name]: { data: Float32Array.from(pixels), shape } });
    const scores = outputs[this.signature.outputs[0].name].data;
    const probabilities = this.signature.output_kind === "probabilities" ? scores : softmax(scores);
    const index = probabilities.indexOf(Math.max(...probabilities));
    const labels = this.signature.labels || probabilities.map((_, i) => String(i));
    const result = { index, label: labels[index], probabilities };
    showClassification(result, labels);
    return result;
  },
};
window.ember = ember;

function toTensor(value, spec) {
  const type = { float32: "float32", int64: "int64", int32: "int32", bool: "bool" }[spec.dtype] || "float32";
  let data = value.data !== undefined ? value.data : value.flat(Infinity);
  const shape = value.shape !== undefined ? value.shape : shapeOf(value);
  if (type === "int64") data = BigInt64Array.from(data, (v) => BigInt(v));
  else if (type === "int32") data = Int32Array.from(data);
  else if (type === "bool") data = Uint8Array.from(data, Boolean);
  else data = Float32Array.from(data);
  return new ort.Tensor(type, data, shape);
}

function shapeOf(nested) {
  const shape = [];
  for (let level = nested; Array.isArray(level); level = level[0]) shape.push(level.length);
  return shape;
}

function softmax(scores) {
  const top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

// ---- image classifiers: a canvas to draw on -------------------------------------------------
function imageLayout(spec) {
  // [-1, C, H, W] (PyTorch) or [-1, H, W, C] (Keras' channels_last), C in {1, 3}.
  const [, a, b, c] = spec.shape;
  return [1, 3].includes(a) ? { channels: a, height: b, width: c, channelsLast: false }
                            : { channels: c, height: a, width: b, channelsLast: true };
}

function canvasPixels() {
  const layout = imageLayout(ember.signature.inputs[0]);
  const small = document.createElement("canvas");
  small.width = layout.width; small.height = layout.height;
  const context = small.getContext("2d");
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage($("board"), 0, 0, layout.width, layout.height);
  const rgba = context.getImageData(0, 0, layout.width, layout.height).data;
  const size = layout.width * layout.height;
  const pixels = new Float32Array(size * layout.channels);
  for (let i = 0; i < size; i++) {
    for (let ch = 0; ch < layout.channels; ch++) {
      // Grayscale models get the mean of R, G, B; values in [0, 1] like ember's image datasets.
      const value = layout.channels === 1 ? (rgba[4 * i] + rgba[4 * i + 1] + rgba[4 * i + 2]) / 765
                                          : rgba[4 * i + ch] / 255;
      pixels[layout.channelsLast ? i * layout.channels + ch : ch * size + i] = value;
    }
  }
  return pixels;
}

// Paint an image (flat, model layout, values in [0, 1]) onto the canvas, e.g. a validation image.
function showImage(pixels) {
  const layout = imageLayout(ember.signature.inputs[0]);
  const small = document.createElement("canvas");
  small.width = layout.width; small.height = layout.height;
  const context = small.getContext("2d");
  const image = context.createImageData(layout.width, layout.height);
  const size = layout.width * layout.height;
  for (let i = 0; i < size; i++) {
    for (let ch = 0; ch < 3; ch++) {
      const c = layout.channels === 1 ? 0 : ch;
      const value = pixels[layout.channelsLast ? i * layout.channels + c : c * size + i];
      image.data[4 * i + ch] = Math.round(255 * Math.min(1, Math.max(0, value)));
    }
    image.data[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  const board = $("board").getContext("2d");
  board.imageSmoothingEnabled = false;
  board.drawImage(small, 0, 0, $("board").width, $("board").height);
}
ember.showImage = showImage;
ember.classifyCanvas = () => ember.classify(canvasPixels());

function showClassification(result, labels) {
  $("prediction").textContent = result.label;
  $("prediction").dataset.index = String(result.index);
  $("probabilities").innerHTML = result.probabilities.map((p, i) =>
    `<tr><td>${labels[i]}</td><td>${(100 * p).toFixed(1)}%</td>` +
    `<td><div class="bar" style="width:${Math.round(120 * p)}px"></div></td></tr>`).join("");
}

function setUpCanvas() {
  const board = $("board");
  const context = board.getContext("2d");
  const clear = () => { context.fillStyle = "#000"; context.fillRect(0, 0, board.width, board.height); };
  clear();
  let drawing = false;
  const point = (event) => {
    const box = board.getBoundingClientRect();
    return [(event.clientX - box.left) * board.width / box.width, (event.clientY - box.top) * board.height / box.height];
  };
  board.addEventListener("pointerdown", (event) => {
    drawing = true;
    context.beginPath();
    context.moveTo(...point(event));
  });
  board.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    context.strokeStyle = "#fff"; context.lineWidth = board.width / 12; context.lineCap = "round";
    context.lineTo(...point(event));
    context.stroke();
  });
  const finish = () => { if (drawing) { drawing = false; ember.classifyCanvas(); } };
  board.addEventListener("pointerup", finish);
  board.addEventListener("pointerleave", finish);
  $("clear").addEventListener("click", () => { clear(); $("prediction").textContent = ""; $("probabilities").innerHTML = ""; });
}

// ---- text classifiers: a text box ----------------------------------------------------------------
function setUpText() {
  $("classify-text").addEventListener("click", () => ember.classifyTexts([$("text-input").value]));
}

// ---- other models: a JSON box -----------------------------------------------------------------
function setUpJson() {
  const example = {};
  for (const spec of ember.signature.inputs) {
    const shape = spec.shape.map((d) => (d === -1 ? 1 : d));
    const zeros = (dims) => (dims.length === 0 ? 0 : Array.from({ length: dims[0] }, () => zeros(dims.slice(1))));
    example[spec.name] = zeros(shape);
  }
  $("json-input").value = JSON.stringify(example);
  $("run").addEventListener("click", async () => {
    try {
      $("json-output").textContent = JSON.stringify(await ember.run(JSON.parse($("json-input").value)), null, 1);
    } catch (error) {
      $("json-output").textContent = String(error);
    }
  });
}

ember.ready = ember.load().then(() => {
  const ui = ember.signature.task === "image_classification" ? "image" : ember.tokenizer ? "text" : "json";
  $(`${ui}-ui`).hidden = false;
  $("result").hidden = ui === "json";
  ({ image: setUpCanvas, text: setUpText, json: setUpJson })[ui]();
  $("status").textContent = "ready";
}).catch((error) => {
  $("status").textContent = "error: " + error;
  throw error;
});
