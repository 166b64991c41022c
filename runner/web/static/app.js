// runner's web view: hash routes, a JSON API, DOM built with textContent only (run values,
// notes and logs are data, never markup), and a poll every few seconds for live pages.
"use strict";

const POLL_MS = 2500;
const STATES = ["COMPLETED", "RUNNING", "CRASHED", "INTERRUPTED", "PRUNED", "UNHATCHED", "CORRUPT"];
const view = { timer: null, route: "", sweep: {}, chartKey: "" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(node, ...children) {  // (replaceChildren would write null as "null")
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s >= 86400) return `${Math.round(s / 86400)} d ago`;
  if (s >= 3600) return `${Math.round(s / 3600)} h ago`;
  if (s >= 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s)} s ago`;
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${s.toFixed(1)}s`;
}

function stateCell(state, extra) {
  return el("span", { class: "state", style: `color: var(--${state})` }, state, extra || "");
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function setWhere(text) { document.getElementById("where").textContent = text; }

function live(ok) {
  const badge = document.getElementById("live");
  badge.textContent = ok ? "live" : "not updating";
  badge.classList.toggle("stale", !ok);
}

function poll(fn) {
  clearInterval(view.timer);
  const tick = () => fn().then(() => live(true), (err) => { live(false); console.warn(err.message); });
  view.timer = setInterval(tick, POLL_MS);
  return fn().then(() => live(true));
}

function showError(err) {
  const main = document.getElementById("main");
  fill(main, el("p", { class: "error", text: err.message }),
                       el("p", {}, el("a", { href: "#/", text: "all sweeps" })));
}

// ------------------------------------------------------------------ every sweep

async function sweepsView() {
  setWhere("every sweep");
  const main = document.getElementById("main");
  const picked = new Set();
  const link = el("a", { id: "compare" });
  const compareLink = () => {
    const names = [...picked];
    link.textContent = names.length > 1 ? `compare ${names.length} sweeps` : "tick two sweeps or more to compare them";
    if (names.length > 1) link.setAttribute("href", `#/compare/${names.map(encodeURIComponent).join(",")}`);
    else link.removeAttribute("href");
  };
  compareLink();
  const render = async () => {
    const data = await api("/api/sweeps");
    const rows = data.sweeps.map((s) => el("tr", { "data-sweep": s.name },
      el("td", {}, el("input", { type: "checkbox", class: "pick", value: s.name, checked: picked.has(s.name),
                                 onchange: (e) => { if (e.target.checked) picked.add(s.name); else picked.delete(s.name); compareLink(); } })),
      el("td", {}, el("a", { href: `#/sweep/${encodeURIComponent(s.name)}`, text: s.name }),
         s.title !== s.name ? el("div", { class: "muted", text: s.title }) : null),
      el("td", { text: s.kind }),
      el("td", { class: "num", text: s.runs }),
      el("td", {}, el("span", { class: "bar" }, el("span", { style: `width:${(100 * s.progress).toFixed(1)}%` })),
         ` ${s.done}/${s.runs}`),
      el("td", {}, STATES.filter((k) => s.counts[k] && k !== "COMPLETED").map((k) =>
         el("span", { class: "chip", style: `background: var(--${k})`, text: `${s.counts[k]} ${k.toLowerCase()}` }))),
      el("td", { class: "num", text: ago(s.last_activity) }),
      el("td", {}, s.tags.map((t) => el("span", { class: "tag", text: t })),
         s.notes ? el("span", { class: "muted", text: ` ${s.notes} note(s)` }) : null)));
    fill(main,
      el("h1", { text: `${data.sweeps.length} sweep(s)` }),
      el("p", { class: "muted" }, `under ${data.roots.join(", ")} · `, link),
      data.sweeps.length ? el("table", { id: "sweeps" },
        el("thead", {}, el("tr", {}, ["", "sweep", "kind", "runs", "done", "other states", "last activity", "tags"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows)) : el("p", { text: "no sweep yet: python -m runner +sweep=grid ... starts one" }));
  };
  await poll(render);
}

// ------------------------------------------------------------------ one sweep

function sweepQuery(s) {
  const q = new URLSearchParams({ offset: s.offset || 0, limit: s.limit || 50 });
  if (s.state) q.set("state", s.state);
  if (s.q) q.set("q", s.q);
  if (s.sort) { q.set("sort", s.sort); q.set("order", s.order || "asc"); }
  return q.toString();
}

async function sweepView(name) {
  setWhere(name);
  const s = view.sweep.name === name ? view.sweep : (view.sweep = { name, offset: 0, limit: 50 });
  const main = document.getElementById("main");
  fill(main, el("p", { class: "muted", text: "loading…" }));
  const head = el("div"), controls = el("div", { class: "controls" }), table = el("div"), charts = el("div");
  let built = false, drawn = "", polls = 0;
  const render = async () => {
    const data = await api(`/api/sweeps/${encodeURIComponent(name)}/runs?${sweepQuery(s)}`);
    if (!built) {
      fill(main, head, controls, table, charts);
      buildControls(controls, s, data, render);
      built = true;
    }
    // the charts follow the runs: again when a state count changes, and every 4th poll while
    // runs are running (their curves grow)
    const signature = JSON.stringify(data.counts);
    polls += 1;
    if (data.counts && (signature !== drawn || (data.counts.RUNNING && polls % 4 === 0))) {
      if (!charts.redraw) buildCharts(charts, name, data); else charts.redraw();
      drawn = signature;
    }
    renderHead(head, data, s, render);
    renderRuns(table, data, s, render);
  };
  await poll(render);
}

function renderHead(head, data, s, render) {
  const counts = data.counts || {};
  fill(head,
    el("h1", { text: data.name }),
    el("p", { class: "muted" }, `${data.kind} sweep · ${data.total} run(s) shown of ${data.runs_in_sweep} · ${data.dir}`),
    data.tags.length ? el("p", {}, "tags: ", data.tags.map((t) => el("span", { class: "tag", text: t }))) : null,
    data.notes.length ? el("p", {}, `note: ${data.notes[data.notes.length - 1].text}`) : null,
    el("div", { id: "counts" }, data.counts ? null : el("span", { class: "muted", text: "counting the runs' states…" }),
      STATES.filter((k) => counts[k]).map((k) =>
      el("span", { class: "chip" + (s.state === k ? " on" : ""), style: `background: var(--${k})`,
                   "data-state": k, text: `${counts[k]} ${k.toLowerCase()}`,
                   onclick: () => { s.state = s.state === k ? "" : k; s.offset = 0; syncControls(); render(); } }))));
}

function syncControls() {
  const select = document.getElementById("state-filter");
  if (select) select.value = view.sweep.state || "";
}

function buildControls(controls, s, data, render) {
  const text = el("input", { id: "text-filter", type: "search", placeholder: "filter: id, value, reason", value: s.q || "" });
  let pending = null;
  text.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(() => { s.q = text.value; s.offset = 0; render(); }, 250);
  });
  const state = el("select", { id: "state-filter" }, el("option", { value: "", text: "every state" }),
    STATES.map((k) => el("option", { value: k, text: k.toLowerCase() })));
  state.value = s.state || "";
  state.addEventListener("change", () => { s.state = state.value; s.offset = 0; render(); });
  const prev = el("button", { id: "prev", text: "‹ previous", onclick: () => { s.offset = Math.max(0, s.offset - s.limit); render(); } });
  const next = el("button", { id: "next", text: "next ›", onclick: () => { s.offset += s.limit; render(); } });
  fill(controls, text, state, prev, next, el("span", { id: "page", class: "muted" }));
}

function renderRuns(holder, data, s, render) {
  const cols = data.varying;
  const metricKeys = [...new Set(data.runs.flatMap((r) => Object.keys(r.metrics || {})))].slice(0, 6);
  const header = (label, key) => el("th", {
    class: "sortable" + (s.sort === key ? " sorted" + (s.order === "desc" ? " desc" : "") : ""),
    "data-sort": key, text: label,
    onclick: () => { s.order = s.sort === key && s.order !== "desc" ? "desc" : "asc"; s.sort = key; s.offset = 0; render(); } });
  const rows = data.runs.map((r) => {
    let mark = "";
    if (r.state === "RUNNING") mark = r.stale ? el("span", { class: "dead", text: " (dead)", title: r.stale_reason || "" })
                                              : el("span", { class: "muted", text: r.lease ? ` on ${r.lease.host}` : "" });
    return el("tr", { "data-run": r.id, "data-state": r.state },
      el("td", {}, el("a", { href: `#/run/${encodeURIComponent(data.name)}/${encodeURIComponent(r.id)}`, text: r.id })),
      cols.map((k) => el("td", { text: fmt(r.values[k]) })),
      el("td", {}, stateCell(r.state, mark)),
      el("td", { class: "num", text: duration(r.duration_s) }),
      metricKeys.map((k) => el("td", { class: "num", text: fmt((r.metrics || {})[k]) })),
      el("td", {}, r.tags.map((t) => el("span", { class: "tag", text: t })),
         r.reason && r.state !== "COMPLETED" ? el("span", { class: "muted", text: r.reason.slice(0, 120) }) : null));
  });
  fill(holder, el("table", { id: "runs" },
    el("thead", {}, el("tr", {}, header("id", "id"), cols.map((k) => header(k, k)), header("state", "state"),
      header("time", "duration"), metricKeys.map((k) => { const h = header(k, k); h.classList.add("num"); return h; }), el("th", { text: "tags / reason" }))),
    el("tbody", {}, rows)));
  const last = Math.min(data.total, s.offset + data.runs.length);
  document.getElementById("page").textContent = data.total ? `runs ${s.offset + 1}–${last} of ${data.total}` : "no run matches";
  document.getElementById("prev").disabled = s.offset <= 0;
  document.getElementById("next").disabled = last >= data.total;
}

// ------------------------------------------------------------------ charts of a sweep

function buildCharts(holder, name, data) {
  if (!data.metrics.length) return;
  const pick = el("select", { id: "metric" }, data.metrics.map((m) => el("option", { value: m, text: m })));
  pick.value = data.metric && data.metrics.includes(data.metric) ? data.metric : data.metrics[0];
  const curves = el("div", { id: "curves", class: "chart" });
  const search = el("div", { class: "grid2" });
  const draw = () => drawCharts(name, data.kind, pick.value, curves, search).catch((err) => console.warn(err.message));
  pick.addEventListener("change", draw);
  holder.redraw = draw;
  fill(holder, el("h2", {}, "curves of ", pick, el("span", { class: "muted", text: " mean over seeds and its 95% t band, per setting (as report groups them)" })),
    curves, search);
  draw();
}

const PLOT_LAYOUT = { margin: { t: 30, r: 20, b: 50, l: 60 }, legend: { orientation: "h", y: -0.2 }, font: { size: 12 } };

async function drawCharts(name, kind, metric, curves, search) {
  if (typeof Plotly === "undefined") return;
  const data = await api(`/api/sweeps/${encodeURIComponent(name)}/curves?metric=${encodeURIComponent(metric)}`);
  const traces = [];
  data.groups.forEach((g, i) => {
    const colour = `hsl(${(i * 137.5) % 360}, 65%, 45%)`;
    if (g.n > 1) {
      traces.push({ x: [...g.steps, ...[...g.steps].reverse()], y: [...g.high, ...[...g.low].reverse()],
                    fill: "toself", fillcolor: colour.replace("hsl", "hsla").replace(")", ", 0.15)"),
                    line: { width: 0 }, hoverinfo: "skip", showlegend: false, type: "scatter" });
    }
    traces.push({ x: g.steps, y: g.mean, name: `${g.label} (n=${g.n})`, line: { color: colour }, type: "scatter", mode: "lines" });
  });
  const last = Math.max(0, ...data.groups.map((g) => g.steps.length ? g.steps[g.steps.length - 1] : 0));
  Plotly.react(curves, traces, { ...PLOT_LAYOUT, showlegend: true, xaxis: { title: { text: "step" }, tick0: 0, dtick: Math.max(1, Math.ceil(last / 10)) },
                                 yaxis: { title: { text: metric } } },
               { displaylogo: false, responsive: true });
  if (kind !== "random" && kind !== "optuna") { fill(search, ); return; }
  const found = await api(`/api/sweeps/${encodeURIComponent(name)}/search?metric=${encodeURIComponent(metric)}`);
  const done = found.points.filter((p) => p.metric !== null);
  if (!done.length || !found.params.length) { fill(search, ); return; }
  const numeric = found.params.filter((k) => done.every((p) => typeof p.values[k] === "number"));
  const parallel = el("div", { id: "parallel", class: "chart" }), best = el("div", { id: "best", class: "chart" });
  const scatters = numeric.map((k) => el("div", { class: "chart", "data-param": k }));
  const matter = found.importances ? el("div", { id: "importances", class: "chart" }) : null;
  fill(search, parallel, best, matter, ...scatters);
  if (matter) {
    const names = Object.keys(found.importances).reverse();
    Plotly.react(matter, [{ type: "bar", orientation: "h", y: names, x: names.map((k) => found.importances[k]) }],
                 { ...PLOT_LAYOUT, title: { text: `what mattered for ${metric} (PED-ANOVA, sums to 1)` }, margin: { ...PLOT_LAYOUT.margin, l: 140 } },
                 { displaylogo: false, responsive: true });
  }
  const dims = numeric.map((k) => ({ label: k, values: done.map((p) => p.values[k]) }));
  dims.push({ label: metric, values: done.map((p) => p.metric) });
  Plotly.react(parallel, [{ type: "parcoords", line: { color: done.map((p) => p.metric), colorscale: "Viridis", showscale: true }, dimensions: dims }],
               { ...PLOT_LAYOUT, title: { text: "parallel coordinates" } }, { displaylogo: false, responsive: true });
  let sofar = null;
  const bestY = found.points.map((p) => {
    if (p.metric !== null && p.state === "COMPLETED") sofar = sofar === null ? p.metric : (found.mode === "max" ? Math.max(sofar, p.metric) : Math.min(sofar, p.metric));
    return sofar;
  });
  Plotly.react(best, [{ x: found.points.map((_, i) => i), y: bestY, type: "scatter", mode: "lines", name: "best so far" },
                      { x: found.points.map((_, i) => i), y: found.points.map((p) => p.metric), type: "scatter", mode: "markers", name: "trial", marker: { size: 5, opacity: 0.6 } }],
               { ...PLOT_LAYOUT, title: { text: `best ${metric} so far (${found.mode})` }, xaxis: { title: { text: "run, in order" } } },
               { displaylogo: false, responsive: true });
  scatters.forEach((div) => {
    const k = div.dataset.param;
    Plotly.react(div, [{ x: done.map((p) => p.values[k]), y: done.map((p) => p.metric), type: "scatter", mode: "markers",
                         text: done.map((p) => `${p.id} ${p.state}`), marker: { color: done.map((p) => p.state === "PRUNED" ? "#5e35b1" : "#0277bd") } }],
                 { ...PLOT_LAYOUT, title: { text: `${metric} against ${k}` }, xaxis: { title: { text: k }, type: found.log.includes(k) ? "log" : "linear" },
                   yaxis: { title: { text: metric } } },
                 { displaylogo: false, responsive: true });
  });
}

// ------------------------------------------------------------------ several sweeps

async function compareView(names) {
  setWhere(`compare ${names.join(", ")}`);
  const main = document.getElementById("main");
  const first = await api(`/api/sweeps/${encodeURIComponent(names[0])}/runs?limit=1`);
  const metrics = first.metrics;
  const pick = el("select", { id: "metric" }, metrics.map((m) => el("option", { value: m, text: m })));
  pick.value = first.metric && metrics.includes(first.metric) ? first.metric : metrics[0];
  const chart = el("div", { id: "comparison", class: "chart" }), table = el("div");
  fill(main, el("h1", { text: `compare ${names.length} sweeps` }), el("h2", {}, "curves of ", pick,
       el("span", { class: "muted", text: " a colour per setting, a line style per sweep" })), chart, table);
  const dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot", "solid", "dash"];
  const draw = async () => {
    if (typeof Plotly === "undefined" || !pick.value) return;
    const data = await api(`/api/compare?sweeps=${names.map(encodeURIComponent).join(",")}&metric=${encodeURIComponent(pick.value)}`);
    const colours = new Map();
    const traces = [], rows = [];
    data.sweeps.forEach((sweep, j) => sweep.groups.forEach((g) => {
      if (!colours.has(g.label)) colours.set(g.label, `hsl(${(colours.size * 137.5) % 360}, 65%, 45%)`);
      traces.push({ x: g.steps, y: g.mean, name: `${sweep.name}: ${g.label} (n=${g.n})`, type: "scatter", mode: "lines",
                    line: { color: colours.get(g.label), dash: dashes[j] } });
      rows.push(el("tr", {}, el("td", { text: sweep.name }), el("td", { text: g.label }), el("td", { class: "num", text: g.n }),
                   el("td", { class: "num", text: fmt(g.final_mean) }), el("td", { class: "num", text: g.ci[0] === null ? "n/a" : `[${fmt(g.ci[0])}, ${fmt(g.ci[1])}]` })));
    }));
    Plotly.react(chart, traces, { ...PLOT_LAYOUT, showlegend: true, xaxis: { title: { text: "step" } }, yaxis: { title: { text: data.metric } } },
                 { displaylogo: false, responsive: true });
    fill(table, el("table", { id: "compare-table" }, el("thead", {}, el("tr", {}, ["sweep", "setting", "n", `final ${data.metric} (mean)`, "95% CI (t)"].map((h) => el("th", { text: h })))),
                   el("tbody", {}, rows)));
  };
  pick.addEventListener("change", draw);
  await poll(draw);
}

// ------------------------------------------------------------------ one run

async function runView(sweep, id) {
  setWhere(`${sweep} / ${id}`);
  const main = document.getElementById("main");
  const top = el("div"), chart = el("div");
  let built = false;
  const render = async () => {
    const r = await api(`/api/sweeps/${encodeURIComponent(sweep)}/runs/${encodeURIComponent(id)}`);
    if (!built) { fill(main, top, chart); buildRunChart(chart, sweep, id, r.metrics_keys); built = true; }
    fill(top,
      el("p", {}, el("a", { href: `#/sweep/${encodeURIComponent(sweep)}`, text: `‹ ${sweep}` })),
      el("h1", { text: r.id }),
      el("dl", { id: "facts" },
        el("dt", { text: "state" }), el("dd", {}, stateCell(r.state), r.reason ? ` ${r.reason}` : ""),
        el("dt", { text: "attempt" }), el("dd", { text: r.attempt }),
        el("dt", { text: "time" }), el("dd", { text: duration(r.duration_s) }),
        el("dt", { text: "values" }), el("dd", { text: Object.entries(r.values).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") || "(none swept)" }),
        el("dt", { text: "tags" }), el("dd", {}, r.tags.map((t) => el("span", { class: "tag", text: t }))),
        el("dt", { text: "summary" }), el("dd", { text: Object.entries(r.summary || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(", ") }),
        el("dt", { text: "folder" }), el("dd", { text: r.dir }),
        r.cleaned ? el("dt", { text: "cleaned" }) : null,
        r.cleaned ? el("dd", { text: `outputs removed ${new Date(r.cleaned.time * 1000).toLocaleString()}: ${(r.cleaned.removed || []).join(", ")}` + (r.cleaned.archive ? ` (archived in ${r.cleaned.archive})` : "") }) : null),
      r.notes.length ? el("div", {}, el("h2", { text: "notes" }), r.notes.map((n) => el("p", { text: n.text }))) : null,
      el("h2", { text: "attempts" }),
      el("table", { id: "attempts" }, el("thead", {}, el("tr", {}, ["#", "state", "host", "pid", "ended", "time", "code", "failure", "reason"].map((h) => el("th", { text: h })))),
        el("tbody", {}, r.attempts.map((a) => el("tr", {},
          el("td", { text: a.attempt }), el("td", {}, a.state ? stateCell(a.state) : ""), el("td", { text: a.host || "" }),
          el("td", { text: a.pid || "" }), el("td", { text: a.end ? new Date(a.end * 1000).toLocaleString() : "" }),
          el("td", { text: duration(a.duration_s) }), el("td", { text: (a.launcher || {}).code || "" }),
          el("td", { text: a.failure || "" }), el("td", { text: a.reason || a.error || "" }))))),
      r.traceback ? el("div", {}, el("h2", { text: "crash" }), el("pre", { id: "traceback", text: r.traceback })) : null,
      r.pruning.length ? el("div", {}, el("h2", { text: "pruning decisions" }), el("pre", { text: r.pruning.map((d) => JSON.stringify(d)).join("\n") })) : null,
      el("div", { class: "grid2" },
        el("div", {}, el("h2", { text: "stdout (end)" }), el("pre", { id: "stdout", text: r.logs.stdout || "(empty)" })),
        el("div", {}, el("h2", { text: "stderr (end)" }), el("pre", { id: "stderr", text: r.logs.stderr || "(empty)" }))),
      el("h2", { text: "files" }), el("p", { text: r.file_list.join("  ") }),
      el("h2", { text: "resolved config" }), el("pre", { id: "config", text: JSON.stringify(r.config, null, 2) }));
  };
  await poll(render);
}

function buildRunChart(holder, sweep, id, keys) {
  if (!keys.length) return;
  const pick = el("select", { id: "run-metric" }, keys.map((m) => el("option", { value: m, text: m })));
  const div = el("div", { class: "chart" });
  const draw = async () => {
    if (typeof Plotly === "undefined") return;
    const s = await api(`/api/sweeps/${encodeURIComponent(sweep)}/runs/${encodeURIComponent(id)}/series?metric=${encodeURIComponent(pick.value)}`);
    Plotly.react(div, [{ x: s.steps, y: s.values, type: "scatter", mode: "lines+markers", name: pick.value }],
                 { ...PLOT_LAYOUT, xaxis: { title: { text: "step" } }, yaxis: { title: { text: pick.value } } }, { displaylogo: false, responsive: true });
  };
  pick.addEventListener("change", draw);
  fill(holder, el("h2", {}, "metric ", pick), div);
  draw();
}

// ------------------------------------------------------------------ routes

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const parts = hash.split("/").map(decodeURIComponent);
  clearInterval(view.timer);
  let shown;
  if (parts[0] === "sweep" && parts[1]) shown = sweepView(parts[1]);
  else if (parts[0] === "run" && parts[1] && parts[2]) shown = runView(parts[1], parts[2]);
  else if (parts[0] === "compare" && parts[1]) shown = compareView(hash.split("/")[1].split(",").map(decodeURIComponent));
  else shown = sweepsView();
  shown.catch(showError);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
