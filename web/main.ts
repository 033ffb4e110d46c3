/**
 * The browser app: a trained sorted network loaded over HTTP once; draw or pick an image, see the
 * active sub-model's prediction, move the slider to switch sub-models (no reload, no weight copy),
 * or let "auto" pick the largest one within a latency target measured on this device.
 * Query: ?model=URL of a run or checkpoint folder (default model/); ?backend=wasm skips WebGPU.
 */
/// <reference types="vite/client" />
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { initEngine, loadModel, type DeployedModel, type RawImage, type SubModelInfo } from '../src/index.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const status = $('status');
const setStatus = (text: string, state: 'loading' | 'ready' | 'error' | 'busy') => {
  status.textContent = text;
  status.dataset.state = state;
};

/** WebGPU when the browser has an adapter, else wasm (threads when the page is cross-origin isolated). */
async function startEngine(): Promise<string> {
  setWasmPaths({
    'tfjs-backend-wasm.wasm': wasmPlain,
    'tfjs-backend-wasm-simd.wasm': wasmSimd,
    'tfjs-backend-wasm-threaded-simd.wasm': wasmThreaded,
  });
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (gpu && params.get('backend') !== 'wasm') {
    try {
      if (await gpu.requestAdapter()) {
        await initEngine('webgpu');
        return 'WebGPU';
      }
    } catch {
      // no usable adapter: wasm below
    }
  }
  await initEngine('wasm');
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
  return `wasm, ${simd ? 'SIMD' : 'no SIMD'}, ${threads ? `threaded build, ${getThreadsCount()} worker thread${getThreadsCount() === 1 ? '' : 's'}` : '1 thread (page not cross-origin isolated)'}`;
}

// ---------------------------------------------------------------------------------------------
// State: the model, its sub-models by FLOPs, the current input and sub-model.

/** Undefined until a model has loaded: the controls do nothing before (or without) one. */
let model: DeployedModel | undefined;
let subs: SubModelInfo[] = [];
let input: RawImage | null = null;
/** What `input` is, for the page's readers (and its test): 'drawing', 'sample N' or 'file NAME'. */
let inputKind = '';
const slider = $<HTMLInputElement>('slider');
const auto = $<HTMLInputElement>('auto');
const targetMs = $<HTMLInputElement>('target-ms');

/**
 * The page's one latency per sub-model on this device: median of 5 predictions (after a warm-up),
 * preprocessing included, measured once. The slider's line and auto mode both show these figures.
 */
const latencies = new Map<string, number>();
const blank: RawImage = { width: 28, height: 28, channels: 1, data: new Uint8Array(28 * 28) };

async function latencyOf(id: string, reps = 5): Promise<number> {
  const known = latencies.get(id);
  if (known !== undefined) return known;
  const x = input ?? blank;
  await model!.predict(x, { sub: id });
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await model!.predict(x, { sub: id });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  latencies.set(id, times[Math.floor(reps / 2)]);
  return latencies.get(id)!;
}

async function update(): Promise<void> {
  if (!model || subs.length === 0) return;
  const sub = subs[Number(slider.value)];
  const info = $('sub-info');
  info.dataset.sub = sub.id;
  info.textContent =
    `${sub.id}: ${sub.params.toLocaleString()} params, ${(sub.flops / 1e6).toFixed(2)} MFLOPs` +
    (sub.accuracy !== undefined ? `, test accuracy ${(100 * sub.accuracy).toFixed(1)} %` : '');
  drawCurve(sub.id);
  if (!input) return;
  setStatus('predicting…', 'busy');
  const prediction = await model.predict(input, { sub: sub.id });
  const ms = await latencyOf(sub.id);
  $('notes').textContent = (prediction.notes ?? []).join('; ');
  const label = $('prediction');
  label.textContent = `${prediction.label} (${(100 * prediction.probability).toFixed(1)} %)`;
  label.dataset.label = prediction.label;
  label.dataset.sub = prediction.subModel;
  label.dataset.input = inputKind;
  const probs = $('probs');
  probs.replaceChildren(
    ...prediction.probabilities.map((p, i) => {
      const row = document.createElement('div');
      row.className = i === prediction.index ? 'bar top' : 'bar';
      const name = document.createElement('span');
      name.textContent = model!.classes[i];
      const bar = document.createElement('div');
      bar.style.width = `${Math.max(1, 180 * p)}px`;
      const value = document.createElement('span');
      value.textContent = `${(100 * p).toFixed(1)}%`;
      row.append(name, bar, value);
      return row;
    }),
  );
  const latency = $('latency');
  latency.dataset.sub = sub.id;
  latency.dataset.ms = String(ms);
  latency.textContent = `latency on this device: ${ms.toFixed(2)} ms per image, preprocessing included (median of 5, measured once)`;
  setStatus(status.dataset.engine ?? 'ready', 'ready');
}

/** Auto mode: latencies of every sub-model here (once), then the largest within the target. */
async function pickAuto(): Promise<void> {
  const note = $('auto-note');
  if (!auto.checked || !model || subs.length === 0) {
    note.textContent = '';
    return;
  }
  if (subs.some((s) => !latencies.has(s.id))) {
    setStatus('measuring every sub-model on this device…', 'busy');
    for (const s of subs) await latencyOf(s.id);
  }
  const target = Number(targetMs.value);
  // subs is sorted by FLOPs: the last that fits is the largest within the target.
  const fits = subs.filter((s) => latencies.get(s.id)! <= target);
  const id = fits.length ? fits[fits.length - 1].id : subs[0].id;
  const ms = latencies.get(id)!;
  note.textContent = fits.length
    ? `auto picked ${id} (${ms.toFixed(2)} ms ≤ ${target} ms)`
    : `no sub-model runs within ${target} ms here; using the smallest, ${id}`;
  note.dataset.sub = id;
  note.dataset.ms = String(ms);
  slider.value = String(subs.findIndex((s) => s.id === id));
  await update();
}

const sortByFlops = (list: SubModelInfo[]) =>
  [...list].sort((a, b) => a.flops - b.flops || a.params - b.params);

// ---------------------------------------------------------------------------------------------
// Accuracy vs FLOPs, the active sub-model marked.

function drawCurve(activeId: string): void {
  const svg = $('curve') as unknown as SVGSVGElement;
  const w = 420;
  const h = 220;
  const m = { l: 44, r: 10, t: 10, b: 32 };
  const points = subs.filter((s) => s.accuracy !== undefined);
  if (points.length === 0) {
    svg.innerHTML = `<text x="10" y="20">no accuracies: evaluate the run (sortednet eval) to see the curve</text>`;
    return;
  }
  const lx = (s: SubModelInfo) => Math.log10(s.flops);
  const [x0, x1] = [Math.min(...points.map(lx)), Math.max(...points.map(lx))];
  const accs = points.map((s) => s.accuracy!);
  const [y0, y1] = [Math.min(...accs) - 0.01, Math.max(...accs) + 0.01];
  const X = (s: SubModelInfo) => m.l + ((lx(s) - x0) / (x1 - x0 || 1)) * (w - m.l - m.r);
  const Y = (a: number) => h - m.b - ((a - y0) / (y1 - y0 || 1)) * (h - m.t - m.b);
  // The Pareto front: best accuracy so far by FLOPs.
  let best = -1;
  const front = points.filter((s) => (s.accuracy! > best ? ((best = s.accuracy!), true) : false));
  const dots = points
    .map((s) => {
      const active = s.id === activeId;
      return `<circle cx="${X(s)}" cy="${Y(s.accuracy!)}" r="${active ? 7 : 3.5}" fill="${active ? '#e63' : '#48f'}" data-sub="${s.id}"${active ? ' data-active="true"' : ''}><title>${s.id}</title></circle>`;
    })
    .join('');
  svg.innerHTML =
    `<line x1="${m.l}" y1="${h - m.b}" x2="${w - m.r}" y2="${h - m.b}" stroke="#999"/>` +
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${h - m.b}" stroke="#999"/>` +
    `<polyline points="${front.map((s) => `${X(s)},${Y(s.accuracy!)}`).join(' ')}" fill="none" stroke="#48f" stroke-opacity="0.4"/>` +
    dots +
    `<text x="${m.l}" y="${h - 8}">${(10 ** x0 / 1e6).toFixed(2)} MFLOPs</text>` +
    `<text x="${w - m.r}" y="${h - 8}" text-anchor="end">${(10 ** x1 / 1e6).toFixed(2)} MFLOPs (log)</text>` +
    `<text x="4" y="${m.t + 10}">${(100 * y1).toFixed(0)} %</text>` +
    `<text x="4" y="${h - m.b}">${(100 * y0).toFixed(0)} %</text>`;
}

// ---------------------------------------------------------------------------------------------
// Input: a drawing pad, and test images from samples.json beside the model.

const pad = $<HTMLCanvasElement>('pad');
const ctx = pad.getContext('2d', { willReadFrequently: true })!;
function clearPad(): void {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
}
clearPad();
let drawing = false;
pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 22;
  ctx.lineCap = 'round';
  ctx.beginPath();
  ctx.moveTo(e.offsetX, e.offsetY);
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  ctx.lineTo(e.offsetX, e.offsetY);
  ctx.stroke();
});
const endStroke = () => {
  if (!drawing) return;
  drawing = false;
  input = ctx.getImageData(0, 0, pad.width, pad.height); // RGBA 280×280: the model resizes it
  inputKind = 'drawing';
  void update();
};
pad.addEventListener('pointerup', endStroke);
pad.addEventListener('pointerleave', endStroke);
$('clear').addEventListener('click', () => {
  clearPad();
  input = null;
  $('prediction').textContent = '–';
});

interface Sample {
  label: number;
  width: number;
  height: number;
  channels: number;
  pixels: string;
}

function sampleImage(s: Sample): RawImage & { data: Uint8Array } {
  const data = Uint8Array.from(atob(s.pixels), (c) => c.charCodeAt(0));
  return { width: s.width, height: s.height, channels: s.channels, data };
}

/** Puts an image on a canvas (grey or RGB bytes to RGBA), scaled with hard pixel edges. */
function paint(canvas: HTMLCanvasElement, img: RawImage & { data: Uint8Array }): void {
  const small = document.createElement('canvas');
  small.width = img.width;
  small.height = img.height;
  const c = img.channels ?? 1;
  const rgba = new ImageData(img.width, img.height);
  for (let p = 0; p < img.width * img.height; p++) {
    for (let k = 0; k < 3; k++) rgba.data[p * 4 + k] = img.data[p * c + (c === 1 ? 0 : k)];
    rgba.data[p * 4 + 3] = 255;
  }
  small.getContext('2d')!.putImageData(rgba, 0, 0);
  const g = canvas.getContext('2d')!;
  g.imageSmoothingEnabled = false;
  g.drawImage(small, 0, 0, canvas.width, canvas.height);
}

/**
 * Test images from samples.json beside the model, when there is one: a static host may answer a
 * missing file with the app's own page (HTML, status 200), which is no sample set either.
 */
async function loadSamples(base: string): Promise<void> {
  let set: { samples?: Sample[] } | undefined;
  try {
    const res = await fetch(new URL('samples.json', base));
    const html = /text\/html/i.test(res.headers.get('content-type') ?? '');
    if (res.ok && !html) set = (await res.json()) as { samples?: Sample[] };
  } catch {
    // not JSON: no samples
  }
  if (!model || !Array.isArray(set?.samples)) {
    $('samples').textContent = '(no test images beside the model: draw one, or open an image file)';
    return;
  }
  const m = model;
  $('samples').replaceChildren(
    ...set.samples.map((s, i) => {
      const button = document.createElement('button');
      button.className = 'sample';
      button.dataset.label = m.classes[s.label];
      button.dataset.index = String(i);
      button.title = `test image: ${m.classes[s.label]}`;
      const thumb = document.createElement('canvas');
      thumb.width = s.width;
      thumb.height = s.height;
      const img = sampleImage(s);
      paint(thumb, img);
      button.append(thumb);
      button.addEventListener('click', () => {
        input = img; // the test image's own pixels, not the scaled copy on the pad
        inputKind = `sample ${i}`;
        paint(pad, img);
        void update();
      });
      return button;
    }),
  );
}

// ---------------------------------------------------------------------------------------------

/** An image file of the user's: decoded by the browser, its alpha kept (RGBA), fitted like any input. */
$<HTMLInputElement>('file').addEventListener('change', async (e) => {
  const file = (e.target as HTMLInputElement).files?.[0];
  if (!file) return;
  try {
    const bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    const canvas = document.createElement('canvas');
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const g = canvas.getContext('2d', { willReadFrequently: true })!;
    g.drawImage(bitmap, 0, 0);
    input = g.getImageData(0, 0, bitmap.width, bitmap.height);
    inputKind = `file ${file.name}`;
    clearPad();
    ctx.drawImage(bitmap, 0, 0, pad.width, pad.height);
    await update();
  } catch (err) {
    setStatus(`${file.name} is not an image this browser can decode (${(err as Error).message})`, 'error');
  }
});

// The controls are live from the start: without a model (none found, or still loading) they do nothing.
slider.addEventListener('input', () => {
  auto.checked = false;
  $('auto-note').textContent = '';
  void update();
});
auto.addEventListener('change', () => void pickAuto());
targetMs.addEventListener('change', () => void pickAuto());

try {
  const engine = await startEngine();
  const base = new URL(params.get('model') ?? 'model/', location.href);
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  setStatus(`loading ${base.href} on ${engine}…`, 'loading');
  const loaded = await loadModel(base.href);
  model = loaded;
  subs = sortByFlops(loaded.subModels());
  slider.max = String(subs.length - 1);
  slider.value = String(subs.length - 1);
  await loadSamples(base.href);
  status.dataset.engine = `ready: ${subs.length} sub-models of one ${loaded.meta.model.family} (${loaded.meta.dataset ?? 'own data'}, step ${loaded.meta.step}) on ${engine}`;
  await update();
  setStatus(status.dataset.engine, 'ready');
} catch (e) {
  setStatus(`error: ${(e as Error).message}`, 'error');
  console.error(e);
}
