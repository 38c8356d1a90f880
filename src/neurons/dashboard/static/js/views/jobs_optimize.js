// Optimization sessions (/api/ai/ollama/optimization): for the chosen session, GET
// /trials/{id} gives every trial, the best result and the convergence history in one read;
// "apply" is POST /apply/{id} (manage scope), which creates <model>-tuned (or the name typed)
// with the best parameters on the nodes holding the model.

import { api, esc, fmt } from "../api.js";
import { lineChart } from "../chart.js";
import { ago, chips, facts, message, seconds, statusBadge } from "./jobs.js";

const BASE = "/api/ai/ollama/optimization";

export const optimize = {
  key: "opt",
  kind: "optimization",
  title: "Optimization",
  noun: "session",
  nouns: "sessions",
  empty: "No optimization sessions yet (POST /api/ai/ollama/optimization/create).",
  id: (s) => String(s.session_id),
  state: (s) => s.status,
  columns: [
    { label: "Session", cell: (s) => `<strong>${esc(s.session_id)}</strong>` },
    { label: "Model", cell: (s) => esc(s.model_name) },
    { label: "Objective", cell: (s) => esc(s.objective.replaceAll("_", " ")) },
    { label: "Strategy", cell: (s) => esc(s.strategy.replaceAll("_", " ")) },
    { label: "Status", cell: (s) => statusBadge(s.status) },
    { label: "Trials", cls: "num", cell: (s) => `${fmt(s.current_iteration)} / ${fmt(s.max_iterations)}` },
    { label: "Best score", cls: "num", cell: (s) => (s.best_result ? fmt(s.best_result.overall_score, 3) : "—") },
    { label: "Created", cell: (s) => ago(s.created_at) },
  ],
  async list() {
    return (await api(`${BASE}/sessions`)).sessions;
  },
  async detail(el, id, ctx) {
    const details = await api(`${BASE}/trials/${encodeURIComponent(id)}`);
    if (el.dataset.id !== id) return;
    if (ctx.fresh) {
      el.innerHTML = skeleton();
      wireApply(el, id);
    }
    draw(el, details, ctx);
  },
};

function skeleton() {
  return `
    <div class="jobs-detail-head" id="opt-head"></div>
    <div class="grid grid-2 jobs-detail-grid">
      <div class="jobs-pane">
        <h3>Convergence</h3>
        <div id="opt-convergence-chart" data-testid="opt-convergence-chart"></div>
        <p class="muted jobs-note" id="opt-convergence-note"></p>
      </div>
      <div class="jobs-pane">
        <h3>Best parameters</h3>
        <div id="opt-best" data-testid="opt-best"></div>
        <form class="form-row jobs-apply" id="opt-apply-form">
          <label>Model name <input id="opt-apply-name" data-testid="opt-apply-name" autocomplete="off" /></label>
          <button class="btn btn-primary" type="submit" id="opt-apply" data-testid="opt-apply">Apply</button>
        </form>
        <p class="jobs-note" id="opt-apply-result" data-testid="opt-apply-result" aria-live="polite"></p>
      </div>
    </div>
    <div class="jobs-pane">
      <h3>Trials</h3>
      <div class="table-wrap jobs-trials">
        <table data-testid="opt-trials" id="opt-trials">
          <thead><tr><th class="num">#</th><th>Parameters</th><th class="num">Score</th><th>State</th>
            <th class="num">Quality</th><th class="num">Tokens/s</th><th class="num">Time</th><th>Node</th></tr></thead>
          <tbody id="opt-trial-rows"></tbody>
        </table>
      </div>
    </div>`;
}

function draw(el, s, ctx) {
  const $ = (id) => el.querySelector(`#${id}`);
  $("opt-head").innerHTML = `
    <h3>Session ${esc(s.session_id)} · ${esc(s.model_name)}</h3>
    ${statusBadge(s.status)}
    <span class="muted">${esc(s.objective.replaceAll("_", " "))}, ${esc(s.strategy.replaceAll("_", " "))}
      · ${fmt(s.current_iteration)} / ${fmt(s.max_iterations)} trials${s.node ? ` on ${esc(s.node)}` : ""}
      · ${esc(seconds(s.elapsed_s))}</span>
    ${s.error ? `<p class="error-text" data-testid="opt-error">${esc(s.error)}</p>` : ""}`;

  // Best so far as a line; each trial's own score as a lone point (gaps between them).
  const history = s.convergence || [];
  const scores = [];
  for (const h of history) scores.push([h.trial, h.overall_score], [h.trial, null]);
  lineChart($("opt-convergence-chart"), {
    series: [
      { name: "best so far", points: history.map((h) => [h.trial, h.best]), color: "#4f6bed" },
      { name: "trial score", points: scores, color: "#d83b01" },
    ],
    xLabel: "trial",
    yLabel: "score",
    height: 200,
    xFormat: (v) => (Number.isInteger(v) ? String(v) : ""),
  });
  $("opt-convergence-note").textContent = history.length
    ? `${history.length} completed trial${history.length === 1 ? "" : "s"}; higher is better.`
    : "No trial has completed yet.";

  drawBest($("opt-best"), s.best);
  const name = $("opt-apply-name");
  const [model, tag = "latest"] = s.model_name.split(":");
  name.placeholder = `${model}:${tag}-tuned`;
  const button = $("opt-apply");
  const allowed = !ctx.can || ctx.can("manage");
  button.disabled = !s.best || !allowed || button.dataset.busy === "1";
  button.title = !allowed ? "needs a key with manage scope" : s.best ? "create the tuned model on the nodes" : "no completed trial yet";

  const trials = s.trials || [];
  $("opt-trial-rows").innerHTML = trials.length
    ? trials.map((t) => trialRow(t, s.best)).join("")
    : `<tr><td colspan="8" class="muted">No trials yet.</td></tr>`;
}

function drawBest(el, best) {
  if (!best) {
    el.innerHTML = `<p class="muted">No completed trial yet.</p>`;
    return;
  }
  const m = best.metrics || {};
  el.innerHTML = facts([
    ["trial", `${fmt(best.trial)}${best.baseline ? ' <span class="chip">baseline</span>' : ""}`],
    ["score", `<strong>${fmt(best.overall_score, 4)}</strong>`],
    ["parameters", chips(best.parameters)],
    ["quality", fmt(m.quality, 3)],
    ["tokens / s", fmt(m.tokens_per_s, 1)],
    ["time to first token", m.ttft_ms != null ? `${fmt(m.ttft_ms, 0)} ms` : null],
    ["Pareto front", best.pareto_front ? `${fmt(best.pareto_front.length)} trial${best.pareto_front.length === 1 ? "" : "s"} (this one is its knee)` : null],
  ]);
}

function trialRow(t, best) {
  const m = t.metrics || {};
  const isBest = best && best.trial === t.trial;
  const params = t.baseline && !Object.keys(t.parameters || {}).length ? '<span class="muted">Ollama defaults</span>' : chips(t.parameters);
  return `<tr data-testid="opt-trial-row" data-trial="${esc(t.trial)}" data-state="${esc(t.state)}"${isBest ? ' class="best"' : ""}>
    <td class="num">${fmt(t.trial)}${t.baseline ? ' <span class="chip">baseline</span>' : ""}${isBest ? ' <span class="badge badge-ok">best</span>' : ""}</td>
    <td>${params}</td>
    <td class="num">${t.overall_score != null ? fmt(t.overall_score, 4) : "—"}</td>
    <td>${statusBadge(t.state)}${t.pruned_reason ? ` <span class="muted" title="${esc(t.pruned_reason)}">${esc(t.pruned_reason)}</span>` : ""}</td>
    <td class="num">${m.quality != null ? fmt(m.quality, 3) : "—"}</td>
    <td class="num">${m.tokens_per_s != null ? fmt(m.tokens_per_s, 1) : "—"}</td>
    <td class="num">${t.duration_s != null ? esc(seconds(t.duration_s)) : "—"}</td>
    <td>${esc(t.node || "—")}</td>
  </tr>`;
}

function wireApply(el, id) {
  const form = el.querySelector("#opt-apply-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = el.querySelector("#opt-apply");
    const out = el.querySelector("#opt-apply-result");
    const name = el.querySelector("#opt-apply-name").value.trim();
    button.disabled = true;
    button.dataset.busy = "1";
    out.className = "jobs-note muted";
    out.textContent = "Creating the tuned model…";
    try {
      const result = await api(`${BASE}/apply/${encodeURIComponent(id)}`, {
        method: "POST",
        body: name ? { name } : {},
      });
      const nodes = Object.entries(result.nodes || {});
      const failed = nodes.filter(([, outcome]) => outcome !== "success"); // else "error: ..."
      out.className = `jobs-note ${failed.length ? "error-text" : "jobs-ok"}`;
      out.innerHTML = nodes.length
        ? `<strong>${esc(result.model)}</strong> from ${esc(result.from)}: ${nodes.map(([n, o]) => `${esc(n)}: ${o === "success" ? "created" : esc(o)}`).join(", ")}`
        : `No node holds ${esc(result.from)}: nothing was created.`;
      out.dataset.state = failed.length || !nodes.length ? "partial" : "ok";
    } catch (error) {
      out.className = "jobs-note error-text";
      out.textContent = `Apply failed: ${message(error)}`;
      out.dataset.state = "error";
    } finally {
      button.dataset.busy = "";
      button.disabled = false;
    }
  });
}
