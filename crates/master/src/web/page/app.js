// The master's page: fetches the JSON endpoints every 2 s and draws them. No libraries, no
// network but the master's own port.
"use strict";

const $ = (id) => document.getElementById(id);
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

function bytes(n) {
  n = Number(n) || 0;
  let u = 0;
  while (n >= 1024 && u < UNITS.length - 1) { n /= 1024; u++; }
  return (u === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + UNITS[u];
}
const rate = (n) => bytes(n) + "/s";
function duration(s) {
  s = Math.floor(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}
function text(id, value) { const e = $(id); if (e) e.textContent = value; }
function cell(tr, value, cls) {
  const td = document.createElement("td");
  if (value instanceof Node) td.appendChild(value); else td.textContent = value;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function bar(part, whole) {
  const outer = document.createElement("div");
  outer.className = "bar";
  const inner = document.createElement("div");
  inner.style.width = (whole > 0 ? Math.min(100, (100 * part) / whole) : 0).toFixed(1) + "%";
  outer.appendChild(inner);
  return outer;
}
async function json(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function overview(o) {
  const ds = (o.status && o.status.dataset) || {};
  const st = ds.status || {};
  const cs = st.cacheStates || {};
  const f = o.figures || {};
  const meta = ds.metadata || {};
  text("dataset-name", (meta.namespace || "") + "/" + (meta.name || ""));
  document.title = "Cistern " + (meta.namespace || "") + "/" + (meta.name || "");
  text("phase", st.phase || "?");
  text("runtime-kind", ((st.runtimes || [])[0] || {}).type || "?");
  text("ufs-total", st.ufsTotal || "?");
  text("file-num", st.fileNum || "?");
  text("cached", cs.cached || "?");
  text("cached-pct", cs.cachedPercentage || "?");
  $("cached-bar").style.width = (parseFloat(cs.cachedPercentage) || 0) + "%";
  text("hit-ratio", cs.cacheHitRatio || "?");
  text("local-hit-ratio", cs.localHitRatio || "?");
  text("remote-hit-ratio", cs.remoteHitRatio || "?");
  text("capacity", cs.cacheCapacity || bytes(f.capacity_bytes));
  text("version", o.version);
  text("uptime", duration(o.uptimeSeconds));
  const tbody = $("mounts").tBodies[0];
  tbody.replaceChildren();
  for (const m of (ds.spec && ds.spec.mounts) || []) {
    const tr = document.createElement("tr");
    cell(tr, m.name || "");
    cell(tr, m.mountPoint || "", "wrap");
    cell(tr, m.path || "/" + (m.name || ""));
    tbody.appendChild(tr);
  }
  // Per-tier totals over every worker.
  const tiers = new Map();
  for (const l of f.levels || []) {
    const t = tiers.get(l.medium) || { used: 0, quota: 0, evicted: 0, demoted: 0 };
    t.used += l.used_bytes; t.quota += l.quota_bytes; t.evicted += l.evicted_bytes; t.demoted += l.demoted_bytes;
    tiers.set(l.medium, t);
  }
  const tb = $("tiers").tBodies[0];
  tb.replaceChildren();
  for (const [medium, t] of tiers) {
    const tr = document.createElement("tr");
    cell(tr, medium);
    cell(tr, bytes(t.used), "num");
    cell(tr, bytes(t.quota), "num");
    cell(tr, bar(t.used, t.quota));
    cell(tr, bytes(t.evicted), "num");
    cell(tr, bytes(t.demoted), "num");
    tb.appendChild(tr);
  }
}

function workers(list) {
  const tbody = $("workers").tBodies[0];
  tbody.replaceChildren();
  for (const w of list) {
    const f = w.figures || {};
    const tr = document.createElement("tr");
    tr.dataset.worker = w.id;
    cell(tr, String(w.id));
    cell(tr, w.address, "wrap");
    cell(tr, w.node || "—");
    const state = document.createElement("span");
    state.className = w.live ? "state-live" : "state-lost";
    state.textContent = w.live ? "live" : "lost";
    cell(tr, state);
    cell(tr, duration(w.lastHeartbeatSeconds) + " ago");
    const levels = document.createElement("div");
    for (const l of f.levels || []) {
      const row = document.createElement("div");
      row.className = "tierbar";
      row.append(l.medium + " ", bar(l.used_bytes, l.quota_bytes), bytes(l.used_bytes) + " / " + bytes(l.quota_bytes));
      levels.appendChild(row);
    }
    cell(tr, levels);
    cell(tr, bytes(f.local_bytes), "num");
    cell(tr, bytes(f.remote_bytes), "num");
    cell(tr, bytes(f.ufs_bytes), "num");
    cell(tr, w.logLevel || "—");
    tbody.appendChild(tr);
  }
}

// Rates between consecutive samples of a counter.
function rates(samples, get) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = (samples[i].t - samples[i - 1].t) / 1000;
    if (dt <= 0) continue;
    out.push([samples[i].t, Math.max(0, get(samples[i]) - get(samples[i - 1])) / dt]);
  }
  return out;
}

function plot(id, series, format, fixedMax) {
  const svg = $(id);
  const W = 600, H = 180, L = 64, B = 18, T = 6;
  const all = series.flatMap((s) => s.points);
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const t0 = Math.min(...all.map((p) => p[0]), Date.now() - 60000);
  const t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const max = fixedMax || Math.max(1e-9, ...all.map((p) => p[1])) * 1.1;
  const x = (t) => L + ((W - L - 4) * (t - t0)) / (t1 - t0);
  const y = (v) => H - B - ((H - B - T) * v) / max;
  for (const v of [0, max / 2, max]) {
    const line = document.createElementNS(ns, "line");
    line.setAttribute("class", "axis");
    line.setAttribute("x1", L); line.setAttribute("x2", W); line.setAttribute("y1", y(v)); line.setAttribute("y2", y(v));
    svg.appendChild(line);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y(v) + 3);
    label.textContent = format(v);
    svg.appendChild(label);
  }
  const span = document.createElementNS(ns, "text");
  span.setAttribute("x", W - 4); span.setAttribute("y", H - 4); span.setAttribute("text-anchor", "end");
  span.textContent = "last " + duration((t1 - t0) / 1000);
  svg.appendChild(span);
  for (const s of series) {
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("stroke", s.color);
    pl.setAttribute("points", s.points.map((p) => x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" "));
    pl.dataset.series = s.name;
    pl.dataset.points = s.points.length;
    pl.dataset.max = Math.max(0, ...s.points.map((p) => p[1]));
    svg.appendChild(pl);
  }
  const legend = $(id.replace("plot-", "legend-"));
  legend.replaceChildren();
  for (const s of series) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    item.append(swatch, s.name + " " + format(last));
    legend.appendChild(item);
  }
}

const TIER_COLORS = { MEM: "#7f56d9", SSD: "#f79009", HDD: "#475467" };

function history(samples) {
  plot("plot-throughput", [
    { name: "local", color: "var(--local)", points: rates(samples, (s) => s.local_bytes) },
    { name: "remote", color: "var(--remote)", points: rates(samples, (s) => s.remote_bytes) },
    { name: "UFS", color: "var(--ufs)", points: rates(samples, (s) => s.ufs_bytes) },
  ], rate);
  const ratio = [];
  for (let i = 1; i < samples.length; i++) {
    const hit = samples[i].local_bytes + samples[i].remote_bytes - samples[i - 1].local_bytes - samples[i - 1].remote_bytes;
    const miss = samples[i].ufs_bytes - samples[i - 1].ufs_bytes;
    if (hit + miss > 0) ratio.push([samples[i].t, hit / (hit + miss)]);
  }
  plot("plot-hit-ratio", [{ name: "hits", color: "var(--local)", points: ratio }], (v) => (100 * v).toFixed(0) + "%", 1);
  const media = [...new Set(samples.flatMap((s) => Object.keys(s.used_by_medium || {})))];
  plot("plot-tiers", media.map((m) => ({
    name: m, color: TIER_COLORS[m] || "#101828",
    points: samples.map((s) => [s.t, (s.used_by_medium || {})[m] || 0]),
  })), bytes);
  plot("plot-ufs", [
    { name: "UFS requests", color: "var(--ufs)", points: rates(samples, (s) => s.ufs_fetches) },
    { name: "cache errors", color: "#f79009", points: rates(samples, (s) => s.cache_errors) },
  ], (v) => v.toFixed(v < 10 ? 1 : 0) + "/s");
}

const pct = (part, whole) => (whole > 0 ? ((100 * part) / whole).toFixed(1) : "0.0") + "%";

// The file browser: the directory in the URL's fragment (#/train), each entry's cached share.
function browsePath() {
  const p = decodeURIComponent(location.hash.slice(1));
  return p.startsWith("/") ? p : "/";
}
function go(path) {
  location.hash = encodeURIComponent(path).replace(/%2F/g, "/");
}
function link(label, path) {
  const a = document.createElement("a");
  a.textContent = label;
  a.href = "#" + path;
  a.addEventListener("click", (ev) => { ev.preventDefault(); go(path); refresh(); });
  return a;
}
async function browse() {
  const path = browsePath();
  const r = await fetch("/api/v1/browse?path=" + encodeURIComponent(path), { cache: "no-store" });
  if (!r.ok) { text("browse-error", (await r.text()).trim()); return; }
  text("browse-error", "");
  const listing = await r.json();
  const crumbs = $("browse-path");
  crumbs.replaceChildren(link("/", "/"));
  let at = "";
  for (const part of listing.path.split("/").filter((p) => p)) {
    at += "/" + part;
    crumbs.append(" ", link(part + "/", at));
  }
  const tbody = $("browse").tBodies[0];
  tbody.replaceChildren();
  for (const e of listing.entries) {
    const tr = document.createElement("tr");
    tr.dataset.name = e.name;
    const child = (listing.path === "/" ? "" : listing.path) + "/" + e.name;
    cell(tr, e.dir ? link(e.name + "/", child) : e.name);
    cell(tr, bytes(e.size) + (e.complete ? "" : "+"), "num");
    cell(tr, pct(e.cached, e.size), "num pct");
    cell(tr, bar(e.cached, e.size));
    cell(tr, String(e.files) + (e.complete ? "" : "+"), "num");
    tbody.appendChild(tr);
  }
}

function dataloads(list) {
  const tbody = $("dataloads").tBodies[0];
  tbody.replaceChildren();
  for (const d of list) {
    const tr = document.createElement("tr");
    tr.dataset.name = d.name;
    cell(tr, d.name);
    cell(tr, d.phase || "?");
    cell(tr, (d.targets || []).join(", "), "wrap");
    cell(tr, pct(d.cached, d.size) + " of " + bytes(d.size), "num pct");
    cell(tr, bar(d.cached, d.size));
    cell(tr, d.duration || "—");
    tbody.appendChild(tr);
  }
}

async function refresh() {
  try {
    const [o, w, h, levels, loads] = await Promise.all([
      json("/api/v1/overview"), json("/api/v1/workers"), json("/api/v1/history"),
      fetch("/api/v1/loglevel", { cache: "no-store" }).then((r) => r.text()),
      json("/api/v1/dataloads"), browse(),
    ]);
    overview(o);
    workers(w);
    history(h);
    dataloads(loads);
    text("loglevels", levels.trim());
    document.body.dataset.loaded = String(Date.now());
  } catch (e) {
    console.error(e);
  }
}

$("loglevel-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams({ target: $("loglevel-target").value, level: $("loglevel-level").value });
  const r = await fetch("/api/v1/loglevel?" + q, { method: "PUT" });
  text("loglevel-result", (await r.text()).trim());
  refresh();
});

window.addEventListener("hashchange", refresh);
refresh();
setInterval(refresh, 2000);
