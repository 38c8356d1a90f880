// Fine-tuning jobs (/api/ai/ollama/fine-tuning): phases, progress, the loss curve and the log.
//
// A job's row keeps its last 200 log lines and its merged metrics:
// the curve is what those hold. Each finished epoch logs "Epoch n/N completed. Loss: x" (the
// epoch's mean training loss), the held-out loss is measured before and after training
// (metrics eval_loss_before / eval_loss_after), and the job keeps its step losses
// (metrics.loss_curve, thinned past 300 points); for a job without them, the steps this page
// sees while it watches (metrics.step, metrics.loss).

import { api, esc, fmt } from "../api.js";
import { lineChart } from "../chart.js";
import { ago, chips, duration, facts, progressCell, seconds, statusBadge } from "./jobs.js";

const BASE = "/api/ai/ollama/fine-tuning";
const PHASES = ["validating", "preparing", "training", "evaluating", "exporting", "deploying"];
const ACTIVE = new Set(["pending", "running"]);
const EPOCH_LINE = /^Epoch (\d+)\/(\d+) completed\. Loss: ([^,\s]+)/;
// Steps seen while watching, by job id: [[epoch position, loss], ...]. Kept across visits.
const watched = new Map();

export const finetune = {
  key: "ft",
  kind: "fine-tuning",
  title: "Fine-tuning",
  noun: "job",
  nouns: "jobs",
  empty: "No fine-tuning jobs yet (POST /api/ai/ollama/fine-tuning/create).",
  id: (job) => String(job.job_id),
  state: (job) => job.state,
  columns: [
    { label: "Job", cell: (j) => `<strong>${esc(j.job_id)}</strong>` },
    { label: "Base → target", cell: (j) => `${esc(j.base_model)} → <strong>${esc(j.target_model_name)}</strong>` },
    { label: "Status", cell: (j) => statusBadge(j.state, j.status) },
    { label: "Progress", cell: (j) => progressCell(j.progress) },
    { label: "Created", cell: (j) => ago(j.created_at) },
    { label: "Took", cell: (j) => duration(j.start_time, j.end_time) },
  ],
  async list() {
    return (await api(`${BASE}/jobs`)).jobs;
  },
  async detail(el, id, ctx) {
    const job = (await api(`${BASE}/status/${encodeURIComponent(id)}`)).job;
    if (el.dataset.id !== id) return;
    note(job);
    if (ctx.fresh) el.innerHTML = skeleton();
    draw(el, job);
  },
};

function skeleton() {
  return `
    <div class="jobs-detail-head" id="ft-head"></div>
    <ol class="jobs-phases" id="ft-phases" data-testid="ft-phases"></ol>
    <div class="grid grid-2 jobs-detail-grid">
      <div class="jobs-pane">
        <h3>Loss</h3>
        <div id="ft-loss-chart" data-testid="ft-loss-chart"></div>
        <p class="muted jobs-note" id="ft-loss-note"></p>
      </div>
      <div class="jobs-pane">
        <h3>Metrics</h3>
        <div id="ft-metrics"></div>
      </div>
    </div>
    <div class="jobs-pane">
      <h3>Log</h3>
      <pre class="jobs-logs" id="ft-logs" data-testid="ft-logs"></pre>
    </div>`;
}

function draw(el, job) {
  const $ = (id) => el.querySelector(`#${id}`);
  $("ft-head").innerHTML = `
    <h3>Job ${esc(job.job_id)} · ${esc(job.base_model)} → ${esc(job.target_model_name)}</h3>
    ${statusBadge(job.state, job.status)}
    <span class="muted">${progressCell(job.progress)}${job.eta_seconds != null && job.state === "running" ? ` · about ${esc(seconds(job.eta_seconds))} left` : ""}</span>
    ${job.error ? `<p class="error-text" data-testid="ft-error">${esc(job.error)}</p>` : ""}`;
  $("ft-phases").innerHTML = PHASES.map((p) => {
    const state = phaseState(job, p);
    return `<li data-phase="${p}" data-state="${state}" class="phase-${state}">${p}</li>`;
  }).join("");

  const curve = lossCurve(job);
  // A job that ended without a loss (it failed validating, say) gets a sentence, not an
  // empty frame that reads as "wait for it".
  const chart = $("ft-loss-chart");
  chart.hidden = !curve.points && !ACTIVE.has(job.state);
  lineChart(chart, {
    series: curve.series,
    xLabel: "epoch",
    yLabel: "loss",
    height: 200,
  });
  $("ft-loss-note").textContent = curve.note;

  const m = job.metrics || {};
  const hp = job.hyperparameters || {};
  $("ft-metrics").innerHTML = facts([
    ["step", m.step != null ? `${fmt(m.step)} / ${fmt(m.total_steps)}` : null],
    ["epoch", m.epoch != null ? `${fmt(m.epoch)} / ${fmt(m.epochs)}` : null],
    ["training loss (last epoch)", m.train_loss != null ? fmt(m.train_loss, 4) : null],
    ["held-out loss before → after", m.eval_loss_before != null ? `${fmt(m.eval_loss_before, 4)} → ${m.eval_loss_after != null ? fmt(m.eval_loss_after, 4) : "…"}` : null],
    ["examples (train / held out)", m.n_train != null ? `${fmt(m.n_train)} / ${fmt(m.n_eval)}` : null],
    ["tokens / s", m.tokens_per_second != null ? fmt(m.tokens_per_second, 1) : null],
    ["data", m.data ? `${fmt(m.data.valid)} valid of ${fmt(m.data.total)}${m.data.invalid ? `, ${fmt(m.data.invalid)} invalid` : ""}` : null],
    ["deployed to", m.deployed_to ? esc(m.deployed_to.join(", ")) : null],
    ["training data", esc(job.training_data_path)],
    ["hyperparameters", chips(pick(hp, ["preset", "learning_rate", "epochs", "batch_size", "lora_r", "lora_alpha", "max_seq_length"]))],
    ["started", job.start_time ? ago(job.start_time) : null],
  ], "ft-metrics");

  const logs = $("ft-logs");
  const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
  logs.textContent = (job.logs || []).join("\n") || "(no log lines yet)";
  logs.dataset.lines = String((job.logs || []).length);
  if (atEnd) logs.scrollTop = logs.scrollHeight;
}

function phaseState(job, phase) {
  const at = PHASES.indexOf(job.current_phase);
  const mine = PHASES.indexOf(phase);
  if (job.state === "completed") return "done";
  if (at < 0) return "todo";
  if (mine < at) return "done";
  if (mine > at) return "todo";
  if (job.state === "failed") return "failed";
  if (job.state === "cancelled") return "cancelled";
  return job.state === "running" ? "current" : "todo";
}

// Training loss per epoch (from the log), the held-out loss before and after, and the steps
// this page saw: all on one axis, the epoch (a step's position is step / total * epochs).
function lossCurve(job) {
  const m = job.metrics || {};
  const epochs = [];
  let total = Number(m.epochs) || null;
  for (const line of job.logs || []) {
    const found = EPOCH_LINE.exec(line);
    if (!found) continue;
    total = Number(found[2]);
    const value = Number(found[3]);
    const epoch = Number(found[1]);
    const point = [epoch, Number.isFinite(value) ? value : null];
    const same = epochs.findIndex((p) => p[0] === epoch); // a resumed job logs an epoch again
    if (same >= 0) epochs[same] = point;
    else epochs.push(point);
  }
  epochs.sort((a, b) => a[0] - b[0]);
  const heldOut = [];
  if (m.eval_loss_before != null) heldOut.push([0, m.eval_loss_before]);
  if (m.eval_loss_after != null) heldOut.push([total || Math.max(1, ...epochs.map((p) => p[0])), m.eval_loss_after]);
  // The job keeps its step curve (metrics.loss_curve: [step, loss] pairs); a job from before
  // it did has only the steps this page saw while watching.
  const perEpoch = (Number(m.epochs) || Number(job.hyperparameters?.epochs) || total || 1) / (Number(m.total_steps) || 1);
  const kept = Array.isArray(m.loss_curve) && m.total_steps ? m.loss_curve.map(([step, loss]) => [step * perEpoch, loss]) : null;
  const steps = kept || watched.get(String(job.job_id)) || [];
  const series = [{ name: "training loss (epoch mean)", points: epochs, color: "#4f6bed" }];
  if (heldOut.length) series.push({ name: "held-out loss", points: heldOut, color: "#d83b01" });
  if (steps.length) series.push({ name: kept ? "step loss" : "step loss (watched live)", points: steps, color: "#8fa3f5" });
  const counted = epochs.length + heldOut.length + steps.length;
  const noteText = counted
    ? `${epochs.length} epoch${epochs.length === 1 ? "" : "s"} logged${heldOut.length ? `, held-out loss ${heldOut.length === 2 ? "before and after" : "before"} training` : ""}${steps.length ? `, ${steps.length} steps${kept ? "" : " seen live"}` : ""}.`
    : job.state === "running"
      ? "Training has not logged a loss yet."
      : "This job recorded no training loss.";
  return { series, note: noteText, points: counted };
}

// Remember a step seen on a running job, for the curve's live part.
function note(job) {
  const m = job.metrics || {};
  if (job.state !== "running" || m.step == null || m.loss == null || !m.total_steps) return;
  const id = String(job.job_id);
  const steps = watched.get(id) || [];
  const x = (Number(m.step) / Number(m.total_steps)) * (Number(m.epochs) || Number(job.hyperparameters?.epochs) || 1);
  if (!steps.length || steps[steps.length - 1][0] < x) steps.push([x, Number(m.loss)]);
  watched.set(id, steps);
}

function pick(object, keys) {
  const out = {};
  for (const k of keys) if (object[k] !== undefined && object[k] !== null) out[k] = object[k];
  return out;
}
