// The dashboard's behaviour: sortable tables, live search list, copy buttons, launch form.
"use strict";

function fmtAccuracy(v) { return v === null || v === undefined ? "-" : Number(v).toFixed(4); }
function fmtDuration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 90) return s.toFixed(1) + " s";
  if (s < 5400) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function sortValue(cell) {
  const raw = cell.dataset.sortValue !== undefined ? cell.dataset.sortValue : cell.textContent.trim();
  return raw;
}

function makeSortable(table) {
  const headers = table.querySelectorAll("thead th");
  headers.forEach((th, index) => {
    th.addEventListener("click", () => {
      const numeric = th.dataset.sort === "number";
      const asc = !th.classList.contains("sorted-asc");
      headers.forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(asc ? "sorted-asc" : "sorted-desc");
      const body = table.tBodies[0];
      const rows = Array.from(body.rows).filter((r) => !r.classList.contains("empty-row"));
      rows.sort((a, b) => {
        let x = sortValue(a.cells[index]); let y = sortValue(b.cells[index]);
        if (numeric) { x = parseFloat(x); y = parseFloat(y); x = isNaN(x) ? -Infinity : x; y = isNaN(y) ? -Infinity : y; }
        const order = x < y ? -1 : x > y ? 1 : 0;
        return asc ? order : -order;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
}

function updateSearchRow(row, s) {
  // The same share as views.progress_percent: search trainings started, then the final pick.
  const p = s.progress || {};
  const n = p.n_trials || (s.spec && s.spec.n_trials) || 0;
  const started = p.budget_used !== undefined ? p.budget_used : (p.complete || 0);
  const finals = p.finals || 0;
  const finalsDone = p.finals_done || 0;
  const total = n + finals;
  const done = Math.min(started, n) + finalsDone;
  const pct = s.state === "completed" ? 100 : (total ? Math.min(100, (100 * done) / total) : 0);
  const state = row.querySelector('[data-field="state"]');
  state.textContent = s.state; state.className = "state state-" + s.state;
  row.dataset.state = s.state;
  row.querySelector('[data-field="progress"]').style.width = pct.toFixed(1) + "%";
  row.querySelector('[data-field="counts"]').textContent =
    started + "/" + n + (finals ? " · final " + finalsDone + "/" + finals : "");
  const best = p.best_search_value !== null && p.best_search_value !== undefined ? p.best_search_value : s.best_value;
  row.querySelector('[data-field="best"]').textContent = fmtAccuracy(best);
  row.querySelector('[data-field="best_baseline"]').textContent = fmtAccuracy(p.best_baseline_value);
  const active = ["queued", "running", "finalizing"].includes(s.state);
  row.querySelector('[data-field="eta"]').textContent = active ? fmtDuration(p.eta_s) : "-";
}

function pollSearches(table) {
  const status = document.getElementById("live-status");
  async function tick() {
    try {
      const response = await fetch(table.dataset.poll, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const page = await response.json();
      const rows = new Map(Array.from(table.querySelectorAll("tr[data-search-id]")).map((r) => [Number(r.dataset.searchId), r]));
      const fresh = page.items.filter((s) => !rows.has(s.id));
      if (fresh.length) { window.location.reload(); return; }  // a new search: redraw the list
      page.items.forEach((s) => updateSearchRow(rows.get(s.id), s));
      table.dataset.updated = String(Date.now());
      status.textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (err) {
      status.textContent = "live updates paused (" + err.message + ")";
    }
  }
  setInterval(tick, 3000);
  tick();
}

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  // Fallback for plain-http hosts where the Clipboard API is unavailable.
  const area = document.createElement("textarea");
  area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed"; area.style.opacity = "0";
  document.body.appendChild(area); area.select();
  const ok = document.execCommand("copy");
  document.body.removeChild(area);
  return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

function setupCopy() {
  document.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", () => {
      const text = document.getElementById(button.dataset.copyTarget).textContent;
      const note = button.parentElement.querySelector(".copied");
      copyText(text).then(() => { note.textContent = "copied"; }, () => { note.textContent = "select and copy by hand"; });
    });
  });
  const redraw = document.getElementById("redraw");
  if (redraw) {
    redraw.addEventListener("click", () => {
      const seed = Number(redraw.dataset.seed) + 1;
      redraw.dataset.seed = String(seed);
      const img = document.getElementById("policy-preview");
      const url = new URL(img.dataset.base, window.location.href);  // the base may hold a query
      url.searchParams.set("seed", String(seed));
      img.src = url.pathname + url.search;
    });
  }
}

function setPath(target, path, value) {
  let node = target;
  path.slice(0, -1).forEach((key) => { node[key] = node[key] || {}; node = node[key]; });
  node[path[path.length - 1]] = value;
}

function formBody(form) {
  const body = { spec: {} };
  const baselines = [];
  for (const el of form.elements) {
    if (!el.name || el.name === "extra") continue;
    if (el.type === "checkbox") { if (el.checked) baselines.push(el.value); continue; }
    if (el.value === "") continue;
    let value = el.value;
    if (el.dataset.type === "int" || el.dataset.type === "float") {
      value = Number(el.value);  // the server validates: a non-number is sent as given
      if (Number.isNaN(value)) value = el.value;
    }
    setPath(body, el.name.split("."), value);
  }
  body.spec.baselines = baselines;
  return body;
}

function mergeDeep(target, extra) {
  Object.entries(extra).forEach(([k, v]) => {
    if (v && typeof v === "object" && !Array.isArray(v) && target[k] && typeof target[k] === "object") mergeDeep(target[k], v);
    else target[k] = v;
  });
}

function showErrors(form, errors) {
  Object.entries(errors).forEach(([key, message]) => {
    let path = key; let slot = null;
    while (path && !(slot = form.querySelector('[data-error-for="' + path + '"]'))) {
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    slot = slot || form.querySelector('[data-error-for="_form"]');
    const text = slot.dataset.errorFor === key ? message : key + ": " + message;
    slot.textContent = slot.textContent ? slot.textContent + "; " + text : text;
    const input = form.querySelector('[name="' + path + '"]');
    if (input) input.classList.add("invalid");
  });
}

function setupLaunch(form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    const body = formBody(form);
    const extra = form.elements.extra.value.trim();
    if (extra) {
      try { mergeDeep(body.spec, JSON.parse(extra)); } catch (err) { showErrors(form, { spec: "extra fields are not valid JSON: " + err.message }); return; }
    }
    const response = await fetch("/launch", { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json", "X-Requested-With": "augsearch-dashboard" }, body: JSON.stringify(body) });
    const answer = await response.json();
    if (response.status === 201) { window.location.assign(answer.url); return; }
    showErrors(form, answer.errors || { _form: "HTTP " + response.status });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  const list = document.querySelector("table[data-poll]");
  if (list) pollSearches(list);
  setupCopy();
  const form = document.getElementById("launch-form");
  if (form) setupLaunch(form);
});
