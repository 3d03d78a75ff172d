// Loaded only while `export(format="web")` times a bundle in Chromium (ember/deploy/web_timing.py); a
// bundle never ships it. It runs the page's own session (app.js: same wasm files, same thread count)
// on the inputs the exporter serves, and posts the outputs and the median latencies back.
"use strict";

(async () => {
  const post = (body) => fetch("/__ember__/result", { method: "POST", body: JSON.stringify(body) });
  const arrays = { float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array,
                   bool: Uint8Array, uint8: Uint8Array, int8: Int8Array };
  try {
    await ember.ready;
    const plan = await (await fetch("/__ember__/plan.json")).json();
    const feeds = {};
    for (const [set, specs] of Object.entries(plan.feeds)) {
      feeds[set] = {};
      for (const spec of specs) {
        const bytes = await (await fetch(spec.url)).arrayBuffer();
        feeds[set][spec.name] = new ort.Tensor(spec.dtype, new arrays[spec.dtype](bytes), spec.shape);
      }
    }
    const results = await ember.session.run(feeds.held);
    const outputs = plan.outputs.map((name) => ({ dims: results[name].dims,
                                                   data: Array.from(results[name].data, Number) }));
    const latency = {};
    for (const set of plan.timed) latency[set] = await medianMs(() => ember.session.run(feeds[set]), plan);
    await post({ outputs, latency, threads: ort.env.wasm.numThreads, isolated: self.crossOriginIsolated,
                 userAgent: navigator.userAgent });
  } catch (error) {
    await post({ error: String((error && error.stack) || error) });
  }
})();

// As report.median_ms in Python: two warm-up runs, then runs until the budget (at least min_runs). A page
// that is not cross-origin isolated sees performance.now() in 0.1 ms steps, so fast models are timed in
// groups of calls lasting about 5 ms each, and the median is taken over the groups' per-call times.
async function medianMs(call, { budget_ms, min_runs, max_runs }) {
  await call();
  let begin = performance.now();
  await call();
  const perGroup = Math.max(1, Math.ceil(5 / Math.max(performance.now() - begin, 0.1)));
  const times = [];
  const started = performance.now();
  while (times.length < max_runs && (times.length < min_runs || performance.now() - started < budget_ms)) {
    begin = performance.now();
    for (let i = 0; i < perGroup; i++) await call();
    times.push((performance.now() - begin) / perGroup);
  }
  times.sort((a, b) => a - b);
  const middle = times.length >> 1;
  return times.length % 2 ? times[middle] : (times[middle - 1] + times[middle]) / 2;
}
