// The Argos page: send a photo to /classify (with explain=true when asked), and on demand to
// /detect and /detect/render.
// Plain browser JavaScript, no dependencies; every request goes to the server that served the page.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
// The map's colour ramp, low to high, and its opacity there: as /classify/render draws it.
const RAMP = [[0x08, 0x30, 0x6b], [0xfd, 0xd8, 0x35], [0xd3, 0x2f, 0x2f]];
const OPACITY = [0.25, 0.7];

const KEY_STORAGE = "argos-api-key"; // sessionStorage: this tab only, gone when it closes

let photo = null; // the File being shown
let photoUrl = null;
let heatmapUrl = null;
let classifyTurn = 0; // only the latest classification may change the page

/** A 4xx/5xx reply or a failed fetch, with the message to show. */
class RequestFailed extends Error {}

/** fetch() with the tab's API key, if one was given; a 401 asks for a key. */
async function call(url, options = {}) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const reply = await fetch(url, { ...options, headers: { ...headers, ...(options.headers || {}) } });
  // A refusal of a key the tab has since replaced is stale: the new key has its own reply.
  if (reply.status === 401 && sessionStorage.getItem(KEY_STORAGE) === key) askForKey(key !== null);
  return reply;
}

function askForKey(rejected) {
  $("key-message").textContent = rejected
    ? "The key was refused. Enter a valid key for this server."
    : "This server needs an API key.";
  $("key-form").hidden = false;
  $("key").focus();
}

function useKey(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, $("key").value.trim());
  $("key").value = "";
  $("key-form").hidden = true;
  loadModels();
  classify();
}

async function send(path, params, file) {
  const body = new FormData();
  body.append("image", file, file.name || "photo");
  const query = new URLSearchParams(params);
  const model = $("model").value;
  if (model) query.set("model", model);
  const started = performance.now();
  let reply;
  try {
    reply = await call(`${path}?${query}`, { method: "POST", body });
  } catch (error) {
    throw new RequestFailed(`Argos could not be reached (${error.message}).`);
  }
  if (!reply.ok) throw new RequestFailed(await describeError(reply));
  return { reply, roundTripMs: performance.now() - started };
}

async function describeError(reply) {
  let text = "";
  try {
    text = await reply.text();
    const body = JSON.parse(text);
    if (body.detail) return `${reply.status} ${body.error || reply.statusText}: ${body.detail}`;
  } catch {
    // not JSON: fall through to the status line and text
  }
  return `${reply.status} ${reply.statusText}${text ? `: ${text.slice(0, 300)}` : ""}`;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function fillBars(list, rows) {
  list.replaceChildren(
    ...rows.map(({ name, score }) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = name;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.setProperty("--score", Math.max(0, Math.min(1, score)));
      const value = document.createElement("span");
      value.className = "score";
      value.textContent = `${(score * 100).toFixed(1)} %`;
      item.append(label, bar, value);
      return item;
    }),
  );
}

/** A trained model says how familiar the photo looks to it, and when it is unknown. */
function describeFamiliarity(result) {
  const line = $("familiarity");
  line.hidden = result.familiarity === undefined;
  if (line.hidden) return;
  const share = `${(result.familiarity * 100).toFixed(0)} %`;
  line.className = result.unknown ? "unknown" : "muted";
  line.textContent = result.unknown
    ? `Unknown: unlike anything this model was trained on (familiarity ${share}); ` +
      "the labels below are only the nearest it knows."
    : `Familiarity ${share}: this photo looks like the model's training images.`;
}

function describeTiming(timing, roundTripMs) {
  const parts = ["preprocess", "inference", "total"].map((key) => `${key} ${timing[key]} ms`);
  return `Server: ${parts.join(" · ")}; round trip ${roundTripMs.toFixed(0)} ms`;
}

function clearDetection() {
  $("boxes").replaceChildren();
  $("detection").hidden = true;
  if (heatmapUrl) URL.revokeObjectURL(heatmapUrl);
  heatmapUrl = null;
  $("heatmap").removeAttribute("src");
}

async function classify() {
  if (!photo) return;
  const turn = ++classifyTurn;
  showError("");
  document.body.classList.add("busy");
  try {
    const params = { top_k: $("top-k").value || "5", groups: "true" };
    if ($("explain").checked) params.explain = "true";
    const { reply, roundTripMs } = await send("classify", params, photo);
    const result = await reply.json();
    if (turn !== classifyTurn) return;
    await drawMap(result.explanation);
    describeFamiliarity(result);
    fillBars(
      $("predictions"),
      result.predictions.map((p) => ({ name: p.label, score: p.score })),
    );
    const groups = result.groups || [];
    fillBars($("groups"), groups);
    $("groups").hidden = $("groups-title").hidden = groups.length === 0;
    $("timing").textContent = describeTiming(result.timing_ms, roundTripMs);
    $("result").hidden = false;
  } catch (error) {
    if (!(error instanceof RequestFailed)) throw error;
    if (turn !== classifyTurn) return;
    $("result").hidden = true;
    showError(error.message);
  } finally {
    if (turn === classifyTurn) document.body.classList.remove("busy");
  }
}

/** The colour and opacity of a map value in [0, 1], as RGBA bytes. */
function ramp(value) {
  const half = value < 0.5 ? 0 : 1;
  const t = value * 2 - half;
  const [from, to] = [RAMP[half], RAMP[half + 1]];
  const alpha = OPACITY[0] + (OPACITY[1] - OPACITY[0]) * value;
  return [...from.map((c, i) => Math.round(c + (to[i] - c) * t)), Math.round(255 * alpha)];
}

/** The class activation map over the photo: one canvas pixel per cell, placed on the box
 * and stretched (bilinearly) by the browser; scaled to the map's largest value. */
async function drawMap(explanation) {
  const canvas = $("cam");
  canvas.hidden = $("explain-note").hidden = !explanation;
  if (!explanation) return;
  const { grid, box, label } = explanation;
  const values = grid.flat();
  const top = Math.max(...values) || 1;
  canvas.width = grid[0].length;
  canvas.height = grid.length;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(canvas.width, canvas.height);
  values.forEach((value, i) => pixels.data.set(ramp(value / top), i * 4));
  context.putImageData(pixels, 0, 0);
  const image = $("photo");
  await image.decode().catch(() => {}); // its natural size is the upright upload's
  const [x0, y0, x1, y1] = box;
  const [width, height] = [image.naturalWidth, image.naturalHeight];
  Object.assign(canvas.style, {
    left: `${(100 * x0) / width}%`,
    top: `${(100 * y0) / height}%`,
    width: `${(100 * (x1 - x0)) / width}%`,
    height: `${(100 * (y1 - y0)) / height}%`,
  });
  canvas.title = `Where the photo shows ${label}`;
  $("explain-note").textContent =
    `Map of ${label}: how strongly each part of the photo alone says it (red: most).`;
}

function drawBoxes(result) {
  const svg = $("boxes");
  const { width, height } = result.image;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("font-size", Math.max(12, Math.round(Math.max(width, height) / 32)));
  svg.replaceChildren(
    ...result.detections.map((d, rank) => {
      const [x0, y0, x1, y1] = d.box;
      const group = document.createElementNS(SVG_NS, "g");
      group.setAttribute("class", `box colour-${rank % 6}`);
      const rect = document.createElementNS(SVG_NS, "rect");
      Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }).forEach(([k, v]) =>
        rect.setAttribute(k, v),
      );
      const caption = document.createElementNS(SVG_NS, "text");
      caption.setAttribute("x", x0 + 4);
      caption.setAttribute("y", y0 + 4);
      caption.textContent = `${d.label} ${(d.score * 100).toFixed(0)} %`;
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = caption.textContent;
      group.append(title, rect, caption);
      return group;
    }),
  );
}

async function detect() {
  if (!photo) return;
  showError("");
  clearDetection();
  document.body.classList.add("busy");
  $("detect").disabled = true;
  const params = { mode: $("detect-mode").value };
  try {
    const { reply, roundTripMs } = await send("detect", params, photo);
    const result = await reply.json();
    drawBoxes(result);
    fillBars(
      $("detections"),
      result.detections.map((d) => ({ name: `${d.label} [${d.box.join(", ")}]`, score: d.score })),
    );
    $("detect-timing").textContent =
      `${result.detections.length} found in ${result.windows} windows (${result.mode}). ` +
      describeTiming(result.timing_ms, roundTripMs);
    $("detection").hidden = false;
    const rendered = await send("detect/render", params, photo);
    heatmapUrl = URL.createObjectURL(await rendered.reply.blob());
    $("heatmap").src = heatmapUrl;
  } catch (error) {
    if (!(error instanceof RequestFailed)) throw error;
    showError(error.message);
  } finally {
    document.body.classList.remove("busy");
    $("detect").disabled = false;
  }
}

function choose(file) {
  if (!file) return;
  photo = file;
  if (photoUrl) URL.revokeObjectURL(photoUrl);
  photoUrl = URL.createObjectURL(file);
  $("photo").src = photoUrl;
  document.body.classList.add("has-photo");
  clearDetection();
  classify();
}

async function loadModels() {
  const reply = await call("models");
  if (reply.ok) {
    const body = await reply.json();
    const names = (Array.isArray(body) ? body : body.models || []).map((m) => m.name || m);
    if (names.length > 1) {
      $("model").replaceChildren(...names.map((name) => new Option(name, name)));
      $("model-choice").hidden = false;
    }
  }
  await describeModel();
}

async function describeModel() {
  const query = $("model").value ? `?model=${encodeURIComponent($("model").value)}` : "";
  const reply = await call(`model${query}`);
  if (!reply.ok) return;
  const card = await reply.json();
  $("model-name").textContent = `${card.name}:${card.version}, ${card.labels.length} labels`;
  const topK = $("top-k"); // a model of two labels has no fifth one to list
  topK.max = card.labels.length;
  if (Number(topK.value) > card.labels.length) topK.value = card.labels.length;
  const dense = $("detect-mode").querySelector("option[value=dense]");
  dense.disabled = !card.dense;
  $("detect-mode").value = card.dense ? "dense" : "exact";
  $("explain").disabled = !card.dense; // the map needs the backbone and head graphs
  if (!card.dense) $("explain").checked = false;
}

function setUp() {
  $("file").addEventListener("change", (event) => choose(event.target.files[0]));
  $("camera").addEventListener("change", (event) => choose(event.target.files[0]));
  $("top-k").addEventListener("change", classify);
  $("explain").addEventListener("change", classify);
  $("detect").addEventListener("click", detect);
  $("key-form").addEventListener("submit", useKey);
  $("model").addEventListener("change", () => {
    describeModel();
    clearDetection();
    classify();
  });
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });
  loadModels();
}

setUp();
