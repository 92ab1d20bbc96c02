// The demo page: send an image to /infer, draw the answer over it, render it back with /render.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = { red: "#e33", green: "#2b2", blue: "#36f", yellow: "#ec2", purple: "#a3c", cyan: "#2cc" };
const GUTTER = 200;       // px right of the image where the labels stand, stacked
const LABEL_H = 32;       // px, two lines
const LABEL_GAP = 6;      // px between stacked labels
let limits = { max_refine_steps: 50, max_render_side: 512 };  // until /v1/limits answers

const keyInput = $("apikey");
keyInput.value = localStorage.getItem("airscene-api-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("airscene-api-key", keyInput.value));

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (keyInput.value) h.Authorization = "Bearer " + keyInput.value;
  return h;
}

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function errorText(resp) {
  return (await errorInfo(resp)).text;
}

// An error answer -> {text, camera}: the server's message (each field it names, then its
// message) and whether it is about the camera (a field under "camera").
async function errorInfo(resp) {
  try {
    const body = await resp.json();
    const d = body.detail;
    if (typeof d === "string") return { text: d, camera: false };
    return {
      text: d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; "),
      camera: d.some((e) => (e.loc || []).includes("camera")),
    };
  } catch (_) {
    return { text: resp.statusText, camera: false };
  }
}

// ---------------------------------------------------------------- the camera box

const cameraBox = $("camera");

function markCamera(invalid) {
  if (invalid) {
    cameraBox.setAttribute("aria-invalid", "true");
    $("camera-box").open = true;
  } else {
    cameraBox.removeAttribute("aria-invalid");
  }
}

function showCameraState() {
  $("camera-state").textContent = cameraBox.value.trim() ? "(stated: sent with the image)" : "(empty: the server's default camera)";
}

cameraBox.addEventListener("input", () => { markCamera(false); showCameraState(); });

// The camera box -> null (empty: the server's default camera) or the camera JSON text to send.
// Throws (nothing is sent) when it is not a JSON object.
function readCamera() {
  const text = cameraBox.value.trim();
  if (!text) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`camera: not valid JSON (${e.message}); nothing was sent. Fix it or empty the box for the server's default camera.`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("camera: must be a JSON object {position, orientation, intrinsics, width, height}; nothing was sent.");
  }
  return JSON.stringify(value);
}

function setCamera(camera) {
  // one field a line, each value compact
  cameraBox.value = camera ? "{\n" + Object.entries(camera).map(([k, v]) => ` ${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(",\n") + "\n}" : "";
  markCamera(false);
  showCameraState();
  if (camera) $("camera-box").open = true;
}

// One line under the result: the camera the answer was computed for.
function cameraLine(answer, sent) {
  const c = answer.camera;
  if (!c) return "";
  const where = sent ? "the camera sent" : "the server's default camera";
  return `Answered for ${where}: elevation ${c.elevation_deg.toFixed(1)}°, distance ${c.distance_m.toFixed(2)} m, ` +
    `vertical fov ${c.fov_deg.toFixed(1)}° (${c.width}x${c.height})`;
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not display this image"));
    img.src = URL.createObjectURL(blob);
  });
}

const pct = (p) => `${(100 * p).toFixed(1)}%`;

// Label rows: y of each label's top, in the order of ``wanted`` (each label's preferred top),
// stacked so that none overlaps the next and all stay inside [0, height].
function stack(wanted, height) {
  const order = wanted.map((y, i) => i).sort((a, b) => wanted[a] - wanted[b]);
  const top = new Array(wanted.length);
  let next = 0;
  for (const i of order) { top[i] = Math.max(wanted[i], next); next = top[i] + LABEL_H + LABEL_GAP; }
  let limit = height - LABEL_H;  // push back up from the bottom edge
  for (const i of order.slice().reverse()) { top[i] = Math.max(0, Math.min(top[i], limit)); limit = top[i] - LABEL_H - LABEL_GAP; }
  return top;
}

// The image with each object's box, and its label in a column to the right of the image (never
// over an object or another label), joined to its box by a line. The layout is kept in
// window.airsceneLayout (canvas pixels) for tests.
function draw(img, answer) {
  const canvas = $("canvas");
  const side = Math.max(img.naturalWidth, img.naturalHeight);
  const scale = side < 256 ? 256 / side : side > 512 ? 512 / side : 1;  // small images drawn larger
  const w = Math.round(img.naturalWidth * scale), h = Math.round(img.naturalHeight * scale);
  const n = answer.objects.length;
  canvas.width = w + GUTTER;
  canvas.height = Math.max(h, n * (LABEL_H + LABEL_GAP));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, w, h);
  ctx.lineWidth = 2;
  const boxes = answer.objects.map((o) => o.bbox.map((v) => v * scale));
  const tops = stack(boxes.map(([, v0, , v1]) => (v0 + v1) / 2 - LABEL_H / 2), canvas.height);
  const labels = [];
  answer.objects.forEach((o, i) => {
    const [u0, v0, u1, v1] = boxes[i];
    const colour = PALETTE[o.color] || "#fff";
    ctx.strokeStyle = colour;
    ctx.strokeRect(u0, v0, u1 - u0, v1 - v0);
    const x = w + 12, y = tops[i], lw = GUTTER - 16;
    ctx.beginPath();
    ctx.moveTo(u1, (v0 + v1) / 2);
    ctx.lineTo(x, y + LABEL_H / 2);
    ctx.stroke();
    ctx.fillStyle = "rgba(0,0,0,0.78)";
    ctx.fillRect(x, y, lw, LABEL_H);
    ctx.fillStyle = colour;
    ctx.fillRect(x, y, 4, LABEL_H);
    ctx.fillStyle = "#fff";
    ctx.font = "bold 12px system-ui, sans-serif";
    const line1 = `${o.id} ${o.color} ${o.shape}  ${pct(o.confidence)}`;
    ctx.fillText(line1, x + 8, y + 13);
    ctx.font = "11px system-ui, sans-serif";
    const line2 = `shape ${pct(o.shape_confidence)} · colour ${pct(o.color_confidence)} · fit ${o.fit.toFixed(2)}`;
    ctx.fillText(line2, x + 8, y + 27);
    labels.push({ x, y, w: lw, h: LABEL_H, text: line1 + " / " + line2 });
  });
  window.airsceneLayout = { image: { w, h }, boxes: boxes.map(([u0, v0, u1, v1]) => ({ x: u0, y: v0, w: u1 - u0, h: v1 - v0 })), labels };
  return { w, h };
}

function table(answer) {
  const body = $("objects").querySelector("tbody");
  body.replaceChildren();
  for (const o of answer.objects) {
    const tr = document.createElement("tr");
    const p = o.position;
    for (const cell of [o.id, o.shape, o.color, o.confidence.toFixed(4), o.shape_confidence.toFixed(4),
                        o.color_confidence.toFixed(4), o.fit.toFixed(2),
                        `${p.x.toFixed(3)}, ${p.y.toFixed(3)}, ${p.z.toFixed(3)}`, o.yaw_deg.toFixed(1)]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function reconstruct(answer, shown) {
  const k = Math.min(1, limits.max_render_side / Math.max(answer.image.width, answer.image.height));
  const request = {
    objects: answer.objects,
    width: Math.max(1, Math.round(answer.image.width * k)),
    height: Math.max(1, Math.round(answer.image.height * k)),
  };
  if (answer.camera) request.camera = answer.camera;  // drawn from the view the answer is for
  const resp = await fetch("/render", {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(request),
  });
  if (!resp.ok) throw new Error(`/render: ${resp.status} ${await errorText(resp)}`);
  const recon = $("recon");
  recon.width = shown.w;  // shown at the same size as the input beside it
  recon.height = shown.h;
  recon.src = URL.createObjectURL(await resp.blob());
}

// The answer's quality: fit and trust, and a plain warning when the image does not look like
// the world the model knows (its answer should then not be used).
function showQuality(answer) {
  const q = answer.quality;
  const el = $("quality");
  el.dataset.inWorld = String(q.in_world);
  const numbers = `fit ${q.fit.toFixed(2)} · trust ${pct(q.trust)} (probability that the count and every shape `
    + `and colour are right)`;
  if (q.in_world) {
    el.className = "";
    el.textContent = numbers + (answer.model.calibrated ? "" : " · these weights are not calibrated");
  } else {
    el.className = "warn";
    el.textContent = "This image does not look like the world the model knows (a tabletop of its shapes and "
      + "colours, seen by a camera of its envelope): do not rely on this answer. " + numbers;
  }
  if (q.residual_png) $("residual").src = "data:image/png;base64," + q.residual_png;
}

// Nothing of an earlier answer stays on screen: called before every request (so an error
// never sits under the previous result).
function clearResult() {
  const canvas = $("canvas");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("objects").querySelector("tbody").replaceChildren();
  $("json").textContent = "";
  $("count").textContent = "no result";
  $("count").dataset.count = "";
  $("timing").textContent = "";
  $("camera-line").textContent = "";
  const quality = $("quality");
  quality.textContent = "";
  quality.className = "";
  quality.dataset.inWorld = "";
  $("residual").removeAttribute("src");
  const recon = $("recon");
  if (recon.src) URL.revokeObjectURL(recon.src);
  recon.removeAttribute("src");
  window.airsceneLayout = null;
}

async function run(blob, name) {
  clearResult();
  let camera;
  try {
    camera = readCamera();
  } catch (err) {
    markCamera(true);
    setStatus(err.message, true);
    return;
  }
  setStatus(`inferring ${name}…`);
  const form = new FormData();
  form.append("image", blob, name);
  if (camera !== null) form.append("camera", camera);
  const params = new URLSearchParams({ refine: $("refine").value || "0", min_confidence: $("minconf").value || "0",
                                      residual: "true" });
  try {
    const resp = await fetch("/infer?" + params, { method: "POST", headers: headers(), body: form });
    if (!resp.ok) {
      const info = await errorInfo(resp);
      if (info.camera) {
        markCamera(true);
        throw new Error(`The camera was refused (/infer: ${resp.status}): ${info.text}`);
      }
      throw new Error(`/infer: ${resp.status} ${info.text}`);
    }
    const answer = await resp.json();
    const img = await loadImage(blob);
    const shown = draw(img, answer);
    table(answer);
    $("json").textContent = JSON.stringify(answer, null, 1);
    $("count").textContent = `${answer.count} object${answer.count === 1 ? "" : "s"}`;
    $("count").dataset.count = String(answer.count);
    $("timing").textContent = `(${answer.timing_ms.total.toFixed(1)} ms on the server)`;
    $("camera-line").textContent = cameraLine(answer, camera !== null);
    showQuality(answer);
    await reconstruct(answer, shown);
    setStatus(`${name}: done`);
  } catch (err) {
    clearResult();
    setStatus(String(err.message || err), true);
  }
}

$("file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (file) run(file, file.name);
});

async function loadSamples() {
  const resp = await fetch("/static/samples/samples.json");
  if (!resp.ok) return;
  for (const s of await resp.json()) {
    const btn = document.createElement("button");
    btn.type = "button";
    btn.title = `${s.count} object${s.count === 1 ? "" : "s"}`;
    if (s.camera) {
      btn.classList.add("camera");
      const v = s.view || {};
      btn.title += `, seen from another camera (${s.camera.width}x${s.camera.height}` +
        (v.elevation_deg !== undefined ? `, elevation ${v.elevation_deg}°, ${v.distance_m} m` : "") + ")";
    } else {
      btn.title += ", the default camera";
    }
    btn.dataset.file = s.file;
    const img = document.createElement("img");
    img.src = "/static/samples/" + s.file;
    img.alt = s.file;
    btn.appendChild(img);
    btn.addEventListener("click", async () => {
      setCamera(s.camera || null);  // the sample's own camera; none: the default camera
      const r = await fetch("/static/samples/" + s.file);
      run(await r.blob(), s.file);
    });
    $("samples").appendChild(btn);
  }
}

// The server's own limits: the refine box allows what the server allows.
async function loadLimits() {
  try {
    const resp = await fetch("/v1/limits");
    if (!resp.ok) return;
    limits = await resp.json();
  } catch (_) {
    return;
  }
  $("refine").max = String(limits.max_refine_steps);
  $("refine-max").textContent = `(0 to ${limits.max_refine_steps})`;
}

// The cameras this server's weights take (GET /v1/model: camera_envelope), under the camera box.
async function loadEnvelope() {
  let env;
  try {
    const resp = await fetch("/v1/model", { headers: headers() });
    if (!resp.ok) return;
    env = (await resp.json()).camera_envelope;
  } catch (_) {
    return;
  }
  if (!env) return;
  const range = (r, unit) => `${r[0]} to ${r[1]}${unit}`;
  $("envelope").textContent = env.supported
    ? `This server's weights: ${env.supported}. A stated camera is refused.`
    : `This server takes cameras at any azimuth, the optical axis ${range(env.elevation_deg, "°")} below the horizon, ` +
      `${range(env.distance, " m")} from where it meets the table (within ${env.look_at_radius} m of the centre), ` +
      `vertical fov ${range(env.fov_deg, "°")}, roll ${range(env.roll_deg, "°")}, aspect ${range(env.aspect, "")}; ` +
      "others are refused with a message naming the field.";
}

showCameraState();
loadLimits();
loadEnvelope();
loadSamples();
