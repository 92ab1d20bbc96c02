// The demo page: send an image to /infer, draw the answer over it, render it back with /render.
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = { red: "#e33", green: "#2b2", blue: "#36f", yellow: "#ec2", purple: "#a3c", cyan: "#2cc" };
const MAX_RENDER_SIDE = 512;

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
  try {
    const body = await resp.json();
    const d = body.detail;
    return typeof d === "string" ? d : d.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  } catch (_) {
    return resp.statusText;
  }
}

function loadImage(blob) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser could not display this image"));
    img.src = URL.createObjectURL(blob);
  });
}

function draw(img, answer) {
  const canvas = $("canvas");
  const side = Math.max(img.naturalWidth, img.naturalHeight);
  const scale = side < 256 ? 256 / side : side > 512 ? 512 / side : 1;  // small images drawn larger
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  ctx.lineWidth = 2;
  ctx.font = "12px system-ui, sans-serif";
  for (const o of answer.objects) {
    const [u0, v0, u1, v1] = o.bbox.map((v) => v * scale);
    const colour = PALETTE[o.color] || "#fff";
    ctx.strokeStyle = colour;
    ctx.strokeRect(u0, v0, u1 - u0, v1 - v0);
    const label = `${o.id} ${o.color} ${o.shape} ${o.confidence.toFixed(2)}`;
    const w = ctx.measureText(label).width + 6;
    const x = Math.max(0, Math.min(u0, canvas.width - w));  // keep the label inside the canvas
    const y = v0 > 16 ? v0 - 16 : Math.min(v1, canvas.height - 16);
    ctx.fillStyle = "rgba(0,0,0,0.7)";
    ctx.fillRect(x, y, w, 16);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, x + 3, y + 12);
  }
}

function table(answer) {
  const body = $("objects").querySelector("tbody");
  body.replaceChildren();
  for (const o of answer.objects) {
    const tr = document.createElement("tr");
    const p = o.position;
    for (const cell of [o.id, o.shape, o.color, o.confidence.toFixed(3),
                        `${p.x.toFixed(3)}, ${p.y.toFixed(3)}, ${p.z.toFixed(3)}`, o.yaw_deg.toFixed(1)]) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function reconstruct(answer) {
  const k = Math.min(1, MAX_RENDER_SIDE / Math.max(answer.image.width, answer.image.height));
  const request = {
    objects: answer.objects,
    width: Math.max(1, Math.round(answer.image.width * k)),
    height: Math.max(1, Math.round(answer.image.height * k)),
  };
  const resp = await fetch("/render", {
    method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(request),
  });
  if (!resp.ok) throw new Error(`/render: ${resp.status} ${await errorText(resp)}`);
  const recon = $("recon");
  recon.width = $("canvas").width;  // shown at the same size as the input beside it
  recon.height = $("canvas").height;
  recon.src = URL.createObjectURL(await resp.blob());
}

async function run(blob, name) {
  setStatus(`inferring ${name}…`);
  $("count").dataset.count = "";
  const form = new FormData();
  form.append("image", blob, name);
  const params = new URLSearchParams({ refine: $("refine").value || "0", min_confidence: $("minconf").value || "0" });
  try {
    const resp = await fetch("/infer?" + params, { method: "POST", headers: headers(), body: form });
    if (!resp.ok) throw new Error(`/infer: ${resp.status} ${await errorText(resp)}`);
    const answer = await resp.json();
    const img = await loadImage(blob);
    draw(img, answer);
    table(answer);
    $("json").textContent = JSON.stringify(answer, null, 1);
    $("count").textContent = `${answer.count} object${answer.count === 1 ? "" : "s"}`;
    $("count").dataset.count = String(answer.count);
    $("timing").textContent = `(${answer.timing_ms.total.toFixed(1)} ms on the server)`;
    await reconstruct(answer);
    setStatus(`${name}: done`);
  } catch (err) {
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
    btn.dataset.file = s.file;
    const img = document.createElement("img");
    img.src = "/static/samples/" + s.file;
    img.alt = s.file;
    btn.appendChild(img);
    btn.addEventListener("click", async () => {
      const r = await fetch("/static/samples/" + s.file);
      run(await r.blob(), s.file);
    });
    $("samples").appendChild(btn);
  }
}

loadSamples();
