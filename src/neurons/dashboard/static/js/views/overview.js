// Overview: the nodes (state, slots, load), the traffic as numbers and live charts
// (requests/s, error rate, p50/p95 latency, tokens/s), running jobs and recent events.
// One summary read draws the page at once; the metrics stream then redraws it every interval,
// and the event stream appends events as they happen.

import { api, esc, fmt, fmtMs, fmtTime, streamSSE } from "../api.js";
import { lineChart } from "../chart.js";

const WINDOW_S = 300;
const EVENTS_SHOWN = 30;
const EVENT_PAGE = 5000; // the API's largest page
const STATE_BADGE = { online: "badge-ok", degraded: "badge-warn", draining: "badge-warn" };

export async function render(root, ctx) {
  root.innerHTML = `
    <section class="grid grid-stats">
      ${stat("nodes", "Nodes online")}
      ${stat("total-requests", "Requests")}
      ${stat("rps", "Requests / s")}
      ${stat("error-rate", "Error rate")}
      ${stat("p50", "Latency p50")}
      ${stat("p95", "Latency p95")}
      ${stat("tps", "Tokens / s")}
      ${stat("tokens", "Tokens")}
    </section>
    <section class="grid grid-2">
      ${chartCard("chart-rps", "Requests / s")}
      ${chartCard("chart-errors", "Error rate (%)")}
      ${chartCard("chart-latency", "Latency (ms)")}
      ${chartCard("chart-tps", "Tokens / s")}
    </section>
    <section class="card">
      <div class="card-head"><h2>Nodes</h2><span class="muted" id="nodes-note"></span></div>
      <div class="table-wrap"><table data-testid="nodes-table">
        <thead><tr><th>Node</th><th>State</th><th>Breaker</th><th>Slots</th>
          <th class="num">In flight</th><th class="num">Queued</th><th class="num">Requests</th>
          <th class="num">Failures</th><th class="num">Latency</th><th>Loaded</th></tr></thead>
        <tbody id="nodes-body"></tbody>
      </table></div>
    </section>
    <section class="grid grid-2">
      <div class="card"><h2>Running jobs</h2><div id="jobs-list"></div></div>
      <div class="card"><h2>Recent events</h2><ul class="events" id="events-list"></ul></div>
    </section>`;

  const $ = (id) => root.querySelector(`#${id}`);
  let last = null;

  function update(summary) {
    last = summary;
    const nodes = summary.nodes || [];
    const online = nodes.filter((n) => n.state === "online").length;
    const current = summary.current || {};
    const total = summary.since_start || {};
    setStat($("nodes"), `${online} / ${nodes.length}`, `${nodes.reduce((a, n) => a + (n.slots || 0), 0)} slots`);
    setStat($("total-requests"), fmt(total.requests ?? 0), `${fmt(total.errors ?? 0)} errors since start`);
    setStat($("rps"), fmt(current.requests_per_s ?? 0, 2), "last 10 s");
    setStat($("error-rate"), `${fmt((current.error_rate ?? 0) * 100, 1)} %`, "last 10 s");
    setStat($("p50"), fmtMs(current.p50_ms), "last 10 s");
    setStat($("p95"), fmtMs(current.p95_ms), "last 10 s");
    setStat($("tps"), fmt(current.tokens_per_s ?? 0, 1), "completion tokens, last 10 s");
    const tokens = (total.prompt_tokens ?? 0) + (total.completion_tokens ?? 0);
    setStat($("tokens"), fmt(tokens), `${fmt(total.completion_tokens ?? 0)} generated`);
    drawCharts(summary.series || []);
    drawNodes(nodes);
    drawJobs(summary.jobs || []);
  }

  function drawCharts(series) {
    const pick = (key, scale = 1) =>
      series.map((p) => [p.t, p[key] === null || p[key] === undefined ? null : p[key] * scale]);
    lineChart($("chart-rps"), { series: [{ name: "requests/s", points: pick("requests_per_s") }] });
    lineChart($("chart-errors"), { series: [{ name: "errors %", points: pick("error_rate", 100), color: "#d13438" }] });
    lineChart($("chart-latency"), {
      series: [
        { name: "p50", points: pick("p50_ms") },
        { name: "p95", points: pick("p95_ms"), color: "#d83b01" },
      ],
    });
    lineChart($("chart-tps"), { series: [{ name: "tokens/s", points: pick("tokens_per_s"), color: "#13a10e" }] });
  }

  function drawNodes(nodes) {
    $("nodes-note").textContent = `${nodes.length} registered`;
    $("nodes-body").innerHTML = nodes.length
      ? nodes.map(nodeRow).join("")
      : `<tr><td colspan="10" class="muted">No nodes registered.</td></tr>`;
  }

  function drawJobs(jobs) {
    $("jobs-list").innerHTML = jobs.length
      ? `<table><tbody>${jobs
          .map(
            (j) => `<tr><td><span class="badge badge-accent">${esc(j.kind.replace("_", " "))}</span></td>
              <td>${esc(j.name || j.id)}</td><td>${badge(j.status)}</td></tr>`,
          )
          .join("")}</tbody></table>`
      : `<p class="muted">Nothing pending or running. <a href="#/jobs">All jobs</a></p>`;
  }

  update(await api(`/api/ai/metrics/summary?window_s=${WINDOW_S}`));

  const metrics = streamSSE(`/api/ai/metrics/stream?interval_s=2&window_s=${WINDOW_S}`, ({ event, data }) => {
    if (event === "summary") {
      ctx.setLive(true);
      update(data);
    }
  });
  // Charts are drawn to the card's width: redraw when the window is resized.
  const onResize = () => last && drawCharts(last.series || []);
  window.addEventListener("resize", onResize);

  const events = [];
  function addEvents(list) {
    events.push(...list);
    events.splice(0, Math.max(0, events.length - EVENTS_SHOWN));
    const shown = [...events].reverse();
    $("events-list").innerHTML = shown.length
      ? shown.map(eventItem).join("")
      : `<li class="muted">No events yet.</li>`;
  }
  // Events come oldest first from a cursor: read up to two pages for the recent ones, then
  // follow the stream from where the pages ended.
  let after = 0;
  for (let i = 0; i < 2; i += 1) {
    const page = await api(`/api/ai/events?after=${after}&limit=${EVENT_PAGE}`);
    addEvents(page.events.slice(-EVENTS_SHOWN));
    after = page.last_id;
    if (page.events.length < EVENT_PAGE) break;
  }
  const stream = streamSSE(`/api/ai/events?after=${after}`, ({ data }) => {
    if (data && data.kind) addEvents([data]);
  });

  return () => {
    metrics.close();
    stream.close();
    window.removeEventListener("resize", onResize);
  };
}

function stat(id, label) {
  return `<div class="card stat"><div class="label">${esc(label)}</div>
    <div class="value" id="${id}" data-testid="${id}">—</div><div class="sub" id="${id}-sub"></div></div>`;
}

function setStat(el, value, sub) {
  el.textContent = value;
  el.nextElementSibling.textContent = sub || "";
}

function chartCard(id, title) {
  return `<div class="card"><h3>${esc(title)}</h3><div id="${id}" data-testid="${id}"></div></div>`;
}

function badge(state) {
  const cls = STATE_BADGE[state] || (/(offline|failed|open|down)/.test(state) ? "badge-bad" : "");
  return `<span class="badge ${cls}">${esc(state)}</span>`;
}

function nodeRow(n) {
  const slots = n.slots || 0;
  const busy = n.slots_busy ?? n.in_flight ?? 0;
  const pct = slots ? Math.min(100, (busy / slots) * 100) : 0;
  const breaker = n.breaker === "closed" ? `<span class="badge badge-ok">closed</span>` : badge(n.breaker || "—");
  return `<tr data-node="${esc(n.name)}">
    <td><strong>${esc(n.name)}</strong></td><td>${badge(n.state)}</td><td>${breaker}</td>
    <td><span class="meter"><span style="width:${pct}%"></span></span>${fmt(busy)} / ${fmt(slots)}</td>
    <td class="num">${fmt(n.in_flight ?? 0)}</td><td class="num">${fmt(n.queued ?? 0)}</td>
    <td class="num">${fmt(n.requests ?? 0)}</td><td class="num">${fmt(n.failures ?? 0)}</td>
    <td class="num">${fmtMs(n.latency_ms)}</td>
    <td>${(n.loaded || []).map((m) => `<span class="chip chip-loaded">${esc(m)}</span>`).join("") || '<span class="muted">none</span>'}</td>
  </tr>`;
}

function eventItem(e) {
  const payload = e.payload && typeof e.payload === "object" ? e.payload : {};
  const detail = Object.entries(payload)
    .slice(0, 4)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
  return `<li><time>${esc(fmtTime(e.at))}</time><span class="badge">${esc(e.kind)}</span>
    <span>${esc(e.subject || "")}</span><span class="muted event-detail">${esc(detail)}</span></li>`;
}
