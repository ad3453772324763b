// The activity-worker console: polls status.json and fills the page the server rendered.
// Tables say what they show: <table data-source="worker.partitions"> and header cells
// <th data-key="lag" data-format="int">; fields say <span data-field="worker.version">.
"use strict";
(function () {
  const POLL_MS = 2000;
  const age = (v) => {
    if (v === null || v === undefined) return "?";
    const s = Number(v);
    if (s < 60) return s.toFixed(1) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  };
  const members = (doc) => {
    const out = {};
    for (const m of (doc.group && doc.group.members) || []) out[m.member_id] = m.client_id;
    return out;
  };
  // The same formats as worker/observability/console/page.py FORMATS.
  const FORMATS = {
    text: (v) => (v === null || v === undefined || v === "" ? "-" : String(v)),
    int: (v) => (v === null || v === undefined ? "-" : Math.trunc(v).toLocaleString("en-US")),
    age: age,
    assigned: (v) => (v || []).map((a) => a.topic + "[" + a.partition + "]").join(", ") || "-",
    member: (v, doc) => (v ? members(doc)[v] || "-" : "-"),
    yesno: (v) => (v ? "yes" : "no"),
  };
  const lookup = (doc, path) =>
    path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), doc);
  const fmt = (name, v, doc) => (FORMATS[name] || FORMATS.text)(v, doc);

  function fillTable(table, doc) {
    const cols = Array.from(table.querySelectorAll("thead th")).map((th) => [th.dataset.key, th.dataset.format]);
    const rows = lookup(doc, table.dataset.source) || [];
    const body = document.createElement("tbody");
    for (const row of rows) {
      const tr = body.insertRow();
      for (const [key, f] of cols) {
        const td = tr.insertCell();
        td.className = f;
        td.textContent = fmt(f, row[key], doc);
      }
    }
    if (!rows.length) {
      const tr = body.insertRow();
      tr.className = "empty";
      const td = tr.insertCell();
      td.colSpan = cols.length;
      td.textContent = table.dataset.empty;
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  function drawChart(rates) {
    const svg = document.getElementById("rate-chart");
    const peak = Math.max(0, ...rates) || 1;
    const n = Math.max(rates.length, 1);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    rates.forEach((r, i) => {
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      rect.setAttribute("x", ((i * 600) / n).toFixed(1));
      rect.setAttribute("y", (100 - (r / peak) * 100).toFixed(1));
      rect.setAttribute("width", ((600 / n) * 0.8).toFixed(1));
      rect.setAttribute("height", ((r / peak) * 100).toFixed(1));
      svg.appendChild(rect);
    });
    document.getElementById("rate-now").textContent = String(rates.length ? rates[rates.length - 1] : 0);
  }

  function render(doc) {
    document.querySelectorAll("table[data-source]").forEach((t) => fillTable(t, doc));
    document.querySelectorAll("[data-field]").forEach((el) => {
      const v = lookup(doc, el.dataset.field);
      el.textContent = fmt(el.dataset.format, v, doc);
      if (el.classList.contains("error")) el.hidden = !v;
    });
    document.querySelectorAll("[data-show]").forEach((el) => {
      el.hidden = !lookup(doc, el.dataset.show);
    });
    document.querySelectorAll("[data-flag]").forEach((el) => {
      const on = Boolean(lookup(doc, el.dataset.flag));
      el.classList.toggle("on", on);
      el.classList.toggle("off", !on);
    });
    drawChart(doc.worker.events_per_second.rates);
  }

  async function poll() {
    const error = document.getElementById("poll-error");
    try {
      const r = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
      if (!r.ok) throw new Error("status.json answered " + r.status);
      render(await r.json());
      document.getElementById("updated").textContent = new Date().toLocaleTimeString("en-GB");
      error.hidden = true;
    } catch (e) {
      error.textContent = "· cannot refresh: " + e.message;
      error.hidden = false;
    }
    setTimeout(poll, POLL_MS);
  }
  poll();
})();
