// Models: every model in the network (the gateway's /api/tags union), where it is and where it
// is loaded (/api/ps), its digest and capabilities, and its traffic (/api/ai/metrics/models).
// Keys with manage scope get pull, copy and delete, which go through the gateway's fanned-out
// /api/pull, /api/copy and /api/delete like any Ollama client's would.

import { api, ApiError, esc, fmt, fmtBytes, fmtMs, fmtTime, ndjson } from "../api.js";
import { barChart } from "../chart.js";

export async function render(root, ctx) {
  const manage = ctx.can("manage");
  root.innerHTML = `
    ${manage ? pullCard() : ""}
    <section class="grid grid-2">
      <div class="card"><h3>Requests by model</h3><div id="chart-requests" data-testid="chart-requests"></div></div>
      <div class="card"><h3>Tokens / s by model</h3><div id="chart-speed" data-testid="chart-speed"></div></div>
    </section>
    <section class="card">
      <div class="card-head"><h2>Models</h2>
        <div><span class="muted" id="models-note"></span>
        <button class="btn btn-small" type="button" id="refresh">Refresh</button></div></div>
      <div class="table-wrap"><table data-testid="models-table">
        <thead><tr><th>Model</th><th>Nodes</th><th>Loaded</th><th>Digest</th>
          <th>Capabilities</th><th class="num" title="requests / errors">Req / err</th>
          <th class="num" title="average latency">Latency</th><th class="num">Tok / s</th>${manage ? "<th></th>" : ""}</tr></thead>
        <tbody id="models-body"></tbody>
      </table></div>
    </section>`;

  const $ = (sel) => root.querySelector(sel);
  const open = new Set(); // models whose per-node rows are shown
  let models = [];

  async function load() {
    const [tags, ps, metrics] = await Promise.all([
      api("/api/tags"),
      api("/api/ps"),
      api("/api/ai/metrics/models").catch((error) => {
        if (error instanceof ApiError && error.status === 401) throw error;
        return { models: [] }; // metrics are extra: the list stands without them
      }),
    ]);
    const loaded = new Map((ps.models || []).map((m) => [m.name || m.model, new Set(m.nodes || [])]));
    const stats = new Map((metrics.models || []).map((m) => [m.model, m]));
    models = (tags.models || [])
      .map((m) => {
        const name = m.name || m.model;
        return { ...m, name, loadedOn: loaded.get(name) || new Set(), stats: stats.get(name) || null };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
    draw();
  }

  function draw() {
    $("#models-note").textContent = `${models.length} model${models.length === 1 ? "" : "s"}`;
    $("#models-body").innerHTML = models.length
      ? models.map((m) => row(m, manage, open.has(m.name)) + (open.has(m.name) ? detail(m, manage) : "")).join("")
      : `<tr><td colspan="10" class="muted">No models on any node.</td></tr>`;
    const used = models.filter((m) => m.stats);
    barChart($("#chart-requests"), { bars: used.map((m) => ({ label: m.name, value: m.stats.inference_count })) });
    barChart($("#chart-speed"), {
      bars: used.map((m) => ({ label: m.name, value: m.stats.tokens_per_s || 0, color: "#13a10e" })),
    });
  }

  async function act(button, work, done) {
    button.disabled = true;
    try {
      await work();
      ctx.toast(done, "ok");
      await load();
    } catch (error) {
      ctx.toast(error.message || String(error), "error");
      button.disabled = false;
    }
  }

  $("#models-body").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const name = button.closest("tr").dataset.model;
    const action = button.dataset.action;
    if (action === "toggle") {
      if (open.has(name)) open.delete(name);
      else open.add(name);
      draw();
    } else if (action === "copy") {
      const cell = button.closest("td");
      cell.innerHTML = `<input class="copy-target" placeholder="new name" value="${esc(name)}-copy" style="width:150px">
        <button class="btn btn-small btn-primary" data-action="copy-go" type="button">Copy</button>
        <button class="btn btn-small" data-action="cancel" type="button">✕</button>`;
      cell.querySelector("input").focus();
    } else if (action === "copy-go") {
      const target = button.closest("td").querySelector("input").value.trim();
      if (!target) return;
      const body = { source: name, destination: target };
      act(button, () => api("/api/copy", { method: "POST", body }), `Copied ${name} to ${target}`);
    } else if (action === "cancel") {
      draw();
    } else if (action === "delete") {
      // Two clicks: the first arms the button, so a stray click deletes nothing.
      if (!button.classList.contains("confirm")) {
        button.classList.add("confirm");
        button.textContent = "Confirm delete";
        return;
      }
      act(button, () => api("/api/delete", { method: "DELETE", body: { model: name } }), `Deleted ${name}`);
    }
  });
  $("#refresh").addEventListener("click", () => load().catch((e) => ctx.toast(e.message, "error")));

  let pulling = null;
  if (manage) {
    $("#pull-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const model = $("#pull-name").value.trim();
      if (!model || pulling) return;
      pulling = new AbortController();
      const bar = $("#pull-progress > span");
      const status = $("#pull-status");
      $("#pull-go").disabled = true;
      status.textContent = "starting…";
      bar.style.width = "0%";
      try {
        await ndjson("/api/pull", { model, stream: true }, (p) => {
          status.textContent = p.status || "";
          if (p.total) bar.style.width = `${Math.min(100, ((p.completed || 0) / p.total) * 100)}%`;
        }, { signal: pulling.signal });
        bar.style.width = "100%";
        status.textContent = `${model}: done`;
        ctx.toast(`Pulled ${model}`, "ok");
        await load();
      } catch (error) {
        if (error.name !== "AbortError") {
          status.textContent = error.message;
          ctx.toast(error.message, "error");
        }
      } finally {
        pulling = null;
        $("#pull-go").disabled = false;
      }
    });
  }

  await load();
  return () => pulling && pulling.abort();
}

function pullCard() {
  return `<section class="card">
    <form id="pull-form" class="form-row">
      <label>Pull a model onto every healthy node
        <input id="pull-name" placeholder="e.g. smollm2:135m" autocomplete="off" data-testid="pull-name"></label>
      <button id="pull-go" class="btn btn-primary" type="submit">Pull</button>
    </form>
    <div class="progress" id="pull-progress"><span></span></div>
    <div class="muted" id="pull-status" style="margin-top:6px"></div>
  </section>`;
}

function details(m) {
  const d = m.details || {};
  const size = m.size ? fmtBytes(m.size) : "";
  return [d.family, d.parameter_size, d.quantization_level, size].filter(Boolean).map(esc).join(" · ");
}

function row(m, manage, open) {
  const s = m.stats;
  const nodes = (m.nodes || [])
    .map((n) => `<span class="chip ${m.loadedOn.has(n) ? "chip-loaded" : ""}" title="${m.loadedOn.has(n) ? "loaded" : "on disk"}">${esc(n)}</span>`)
    .join("");
  const loaded = m.loadedOn.size
    ? `<span class="badge badge-ok">loaded</span>`
    : `<span class="badge">not loaded</span>`;
  const caps = (m.capabilities || []).map((c) => `<span class="chip">${esc(c)}</span>`).join("");
  const actions = manage
    ? `<td class="actions"><button class="btn btn-small" data-action="copy" type="button">Copy</button>
        <button class="btn btn-small btn-danger" data-action="delete" type="button">Delete</button></td>`
    : "";
  return `<tr data-model="${esc(m.name)}">
    <td class="model-name"><span class="nowrap"><button class="btn btn-ghost btn-small" data-action="toggle"
      type="button" title="per node">${open ? "▾" : "▸"}</button> <strong>${esc(m.name)}</strong></span>
      <div class="muted">${details(m)}</div></td>
    <td data-testid="model-nodes">${nodes}</td><td>${loaded}</td>
    <td class="mono" title="${esc(m.digest || "")}">${esc((m.digest || "").replace(/^sha256:/, "").slice(0, 12))}</td>
    <td data-testid="model-capabilities">${caps}</td>
    <td class="num">${fmt(s ? s.inference_count : 0)} <span class="muted">/ ${fmt(s ? s.error_count : 0)}</span></td>
    <td class="num">${s && s.average_latency !== null ? fmtMs(s.average_latency * 1000) : "—"}</td>
    <td class="num">${s ? fmt(s.tokens_per_s, 1) : "—"}</td>${actions}</tr>`;
}

function detail(m, manage) {
  const perNode = new Map(((m.stats && m.stats.nodes) || []).map((n) => [n.node, n]));
  const rows = (m.nodes || []).map((name) => {
    const n = perNode.get(name) || {};
    return `<tr><td>${esc(name)}</td><td>${m.loadedOn.has(name) ? "loaded" : "on disk"}</td>
      <td class="mono">${esc((n.digest || m.digest || "").replace(/^sha256:/, "").slice(0, 12))}</td>
      <td class="num">${fmt(n.inference_count ?? 0)}</td><td class="num">${fmt(n.error_count ?? 0)}</td>
      <td class="num">${n.average_latency != null ? fmtMs(n.average_latency * 1000) : "—"}</td>
      <td class="num">${fmt(n.tokens_per_s, 1)}</td>
      <td class="num">${fmt(n.prompt_tokens ?? 0)} / ${fmt(n.completion_tokens ?? 0)}</td>
      <td>${esc(fmtTime(n.last_used_at))}</td></tr>`;
  });
  return `<tr class="detail"><td colspan="${manage ? 10 : 9}"><table>
    <thead><tr><th>Node</th><th>State</th><th>Digest</th><th class="num">Requests</th><th class="num">Errors</th>
      <th class="num">Avg latency</th><th class="num">Tokens / s</th><th class="num">Tokens in / out</th>
      <th>Last used</th></tr></thead><tbody>${rows.join("")}</tbody></table></td></tr>`;
}
