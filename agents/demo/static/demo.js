// Retrieve as you draw: strokes are captured as points (pointer events), sent to the server after every
// stroke, and the server renders and ranks them; this page only draws and shows what comes back.
"use strict";

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const plot = document.getElementById("plot");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const targetSelect = document.getElementById("target");
const targetThumb = document.getElementById("target-thumb");
const COLORS = { frozen: "#1f77b4", rl: "#d62728" };

let info = null;
let strokes = [];          // finished strokes, each a list of [x, y] canvas points
let current = null;        // the stroke being drawn
let history = [];          // per stroke count: {method: rank}
let seq = 0;               // the newest request sent; older answers are dropped
let shown = 0;             // the newest answer shown
let liveBusy = false;
let replaying = false;

function target() {
  const v = targetSelect.value;
  return v === "" ? null : Number(v);
}

function showError(message) {
  errorLine.textContent = message;
  errorLine.hidden = !message;
}

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 4;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  for (const s of current ? strokes.concat([current]) : strokes) {
    ctx.beginPath();
    ctx.moveTo(s[0][0], s[0][1]);
    for (const p of s.slice(1)) ctx.lineTo(p[0], p[1]);
    if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
    ctx.stroke();
  }
}

function drawPlot() {
  const g = plot.getContext("2d");
  const w = plot.width, h = plot.height, left = 40, bottom = 24, top = 8, right = 10;
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, w, h);
  const n = Math.max(history.length, 2);
  const maxRank = info ? info.gallery_size : 1000;
  const logMax = Math.log10(Math.max(maxRank, 10));
  const x = (k) => left + (k - 1) * (w - left - right) / (n - 1);
  const y = (r) => top + (Math.log10(r) / logMax) * (h - top - bottom);
  g.strokeStyle = "#999"; g.fillStyle = "#555"; g.font = "11px sans-serif"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(left, top); g.lineTo(left, h - bottom); g.lineTo(w - right, h - bottom); g.stroke();
  for (let r = 1; r <= maxRank; r *= 10) g.fillText(String(r), 4, y(r) + 4);
  for (let k = 1; k <= n; k += Math.ceil(n / 10)) g.fillText(String(k), x(k) - 3, h - bottom + 12);
  g.fillText("rank", 4, h - bottom - 4);
  if (!info) return;
  for (const m of info.methods) {
    const pts = history.map((row, i) => [i + 1, row[m]]).filter((p) => p[1] != null);
    g.strokeStyle = COLORS[m]; g.fillStyle = COLORS[m]; g.lineWidth = 2;
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.stroke();
    for (const p of pts) g.fillRect(x(p[0]) - 2, y(p[1]) - 2, 4, 4);
    g.fillText(info.labels[m], w - right - 150, h - bottom - 24 + 14 * info.methods.indexOf(m));
  }
}

function showResult(res) {
  const t = target();
  for (const m of ["frozen", "rl"]) {
    const box = document.getElementById("method-" + m);
    if (!res.methods[m]) { box.hidden = true; continue; }
    box.hidden = false;
    const r = res.methods[m].rank;
    const rankEl = document.getElementById("rank-" + m);
    rankEl.textContent = r == null ? "-" : `${r} of ${info.gallery_size}`;
    rankEl.dataset.rank = r == null ? "" : String(r);
    const list = document.getElementById("top-" + m);
    list.replaceChildren(...res.methods[m].top.map((item) => {
      const li = document.createElement("li");
      li.dataset.photo = String(item.photo);
      if (item.photo === t) li.className = "hit";
      const img = document.createElement("img");
      img.src = item.thumb; img.alt = item.label;
      li.append(img, document.createTextNode(item.label));
      return li;
    }));
  }
}

async function update(final) {
  const mySeq = ++seq;
  const body = JSON.stringify({ strokes: current && !final ? strokes.concat([current]) : strokes,
                                width: canvas.width, height: canvas.height, target: target() });
  const count = strokes.length;
  let res;
  try {
    const resp = await fetch("/api/rank", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    res = await resp.json();
    if (!resp.ok) { showError(res.error || `error ${resp.status}`); return; }
  } catch (e) {
    showError(String(e));
    return;
  }
  if (mySeq < shown) return;
  shown = mySeq;
  showError("");
  showResult(res);
  if (final) {
    history = history.slice(0, count - 1);
    if (count > 0) history[count - 1] = Object.fromEntries(info.methods.map((m) => [m, res.methods[m].rank]));
    drawPlot();
    statusLine.textContent = `${count} stroke${count === 1 ? "" : "s"} drawn; step ${res.step == null ? "-" :
      res.step + 1} of ${info.steps}; ${res.timing_ms.server ?? "-"} ms on the server`;
    statusLine.dataset.strokes = String(count);
    statusLine.dataset.seq = String(mySeq);
  }
}

function point(ev) {
  // canvas pixels: the client point less the content box's corner (inside the border), scaled to the canvas
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left - canvas.clientLeft) * canvas.width / canvas.clientWidth,
          (ev.clientY - r.top - canvas.clientTop) * canvas.height / canvas.clientHeight];
}

canvas.addEventListener("pointerdown", (ev) => {
  if (replaying || !info) return;
  canvas.setPointerCapture(ev.pointerId);
  current = [point(ev)];
  redraw();
});
canvas.addEventListener("pointermove", (ev) => {
  if (!current) return;
  const p = point(ev), last = current[current.length - 1];
  if (Math.abs(p[0] - last[0]) + Math.abs(p[1] - last[1]) < 0.5) return;
  current.push(p);
  redraw();
  if (document.getElementById("live").checked && !liveBusy) {
    liveBusy = true;
    update(false).finally(() => { liveBusy = false; });
  }
});
function endStroke(ev) {
  if (!current) return;
  if (ev && ev.type === "pointerup") current.push(point(ev));
  strokes.push(current);
  current = null;
  redraw();
  update(true);
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

function reset() {
  strokes = []; current = null; history = [];
  redraw(); drawPlot();
  update(true);
}
document.getElementById("undo").addEventListener("click", () => {
  strokes.pop();
  history = history.slice(0, strokes.length);
  redraw(); drawPlot();
  update(true);
});
document.getElementById("clear").addEventListener("click", reset);
targetSelect.addEventListener("change", () => {
  const t = target();
  const opt = info.targets.find((x) => x.photo === t);
  targetThumb.hidden = !opt;
  if (opt) fetchThumb(opt);
  reset();
});
document.getElementById("surprise").addEventListener("click", () => {
  const opt = info.targets[Math.floor(Math.random() * info.targets.length)];
  targetSelect.value = String(opt.photo);
  targetSelect.dispatchEvent(new Event("change"));
});

async function fetchThumb(opt) {
  const resp = await fetch(`/api/photo/${opt.photo}`);
  const photo = await resp.json();
  if (!resp.ok) { showError(photo.error); return; }
  targetThumb.src = photo.thumb;
  targetThumb.alt = photo.label;
}

document.getElementById("replay").addEventListener("click", async () => {
  if (!info || replaying) return;
  const t = target();
  const opt = info.targets.find((x) => x.photo === t) || info.targets[0];
  const resp = await fetch(`/api/sketch/${opt.sketch}?size=${canvas.width}`);
  const sk = await resp.json();
  if (!resp.ok) { showError(sk.error); return; }
  targetSelect.value = String(sk.photo);
  fetchThumb(opt);
  replaying = true;
  strokes = []; history = []; redraw(); drawPlot();
  for (const s of sk.strokes) {
    current = [];
    for (const p of s) { current.push(p); redraw(); await new Promise((r) => setTimeout(r, 8)); }
    strokes.push(current); current = null;
    await update(true);
  }
  replaying = false;
});

async function start() {
  const resp = await fetch("/api/info");
  info = await resp.json();
  document.getElementById("about").textContent =
    `${info.dataset} ${info.split} gallery of ${info.gallery_size} photos; ` +
    `${info.labels.frozen}` + (info.labels.rl ? ` against the ${info.labels.rl}` : "") +
    `; the top ${info.topk} after every stroke.`;
  for (const m of info.methods) document.getElementById("label-" + m).textContent = info.labels[m];
  if (!info.methods.includes("rl")) document.getElementById("method-rl").hidden = true;
  const none = document.createElement("option");
  none.value = ""; none.textContent = "(no target)";
  targetSelect.append(none, ...info.targets.map((x) => {
    const o = document.createElement("option");
    o.value = String(x.photo); o.textContent = x.label;
    return o;
  }));
  targetSelect.value = String(info.targets[0].photo);
  fetchThumb(info.targets[0]);
  redraw(); drawPlot();
  document.body.dataset.ready = "1";
}
start().catch((e) => showError(String(e)));
