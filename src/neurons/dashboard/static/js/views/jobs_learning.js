// Learning runs (/api/ai/learning/runs): accuracy per round for each node, and who taught whom.
//
// The run's state (GET /runs/{id}) holds only the scalar metrics of each round; the per-node
// tables are in its events (GET /runs/{id}/events), read incrementally (after= the last one
// seen). What each mode records:
// - distill: each `round` has every node's knowledge level (its validation accuracy) and the
//   teacher→student pairs; each `taught` event is one lesson (teacher, student, the student's
//   knowledge before and after);
// - ensemble: each `round` has every member's test accuracy; from round 2 each `learned`
//   event of kind "collaboration" names the peers a node learned from, with their weights;
// - fedavg, fedprox, fedmedian, fedtrimmedavg: one global model (test and validation accuracy
//   per round); each node's `update` carries its local training loss; nobody teaches anybody;
// - centralized: one model on all the data, the yardstick.
// Events other than `round` carry no round of their own when the mode does not put one in
// them: they belong to the round whose `round` event follows them.

import { api, esc, fmt } from "../api.js";
import { lineChart } from "../chart.js";
import { ago, duration, facts, progressCell, statusBadge } from "./jobs.js";

const BASE = "/api/ai/learning/runs";
const PAGE = 5000; // the API's largest page
const MAX_PAGES = 20;
const FEDERATED = new Set(["fedavg", "fedprox", "fedmedian", "fedtrimmedavg"]);
const SHOWN_ROUNDS = 60; // the per-round transfer table shows the latest ones
// Events read so far, by run id: {after, events}. A run's events are only ever appended.
const cache = new Map();

export const learning = {
  key: "learn",
  kind: "learning",
  title: "Learning runs",
  noun: "run",
  nouns: "runs",
  empty: "No learning runs yet (POST /api/ai/learning/runs).",
  id: (r) => String(r.run_id),
  state: (r) => r.status,
  columns: [
    { label: "Run", cell: (r) => `<strong>${esc(r.run_id)}</strong>` },
    { label: "Mode", cell: (r) => `<span class="badge badge-accent">${esc(r.mode)}</span>` },
    { label: "Dataset", cell: (r) => esc(r.dataset) },
    { label: "Nodes", cls: "num", cell: (r) => fmt(r.config?.nodes) },
    { label: "Status", cell: (r) => statusBadge(r.status) },
    { label: "Round", cell: (r) => `${progressCell(r.progress)} ${fmt(r.current_round)} / ${fmt(r.total_rounds)}` },
    { label: "Test accuracy", cls: "num", cell: (r) => pct(r.result?.test_accuracy) },
    { label: "Created", cell: (r) => ago(r.created_at) },
  ],
  async list() {
    return (await api(BASE)).runs;
  },
  async detail(el, id, ctx) {
    const path = `${BASE}/${encodeURIComponent(id)}`;
    const [run, events] = await Promise.all([api(path).then((a) => a.run), readEvents(path, id)]);
    if (el.dataset.id !== id) return;
    if (ctx.fresh) el.innerHTML = skeleton();
    draw(el, run, byRound(events));
  },
};

async function readEvents(path, id) {
  const known = cache.get(id) || { after: 0, events: [] };
  for (let i = 0; i < MAX_PAGES; i += 1) {
    const page = (await api(`${path}/events?after=${known.after}&limit=${PAGE}`)).events;
    known.events.push(...page);
    if (page.length) known.after = page[page.length - 1].event_id;
    if (page.length < PAGE) break;
  }
  cache.set(id, known);
  return known.events;
}

// The events grouped by the round they belong to: {rounds: Map(round → round payload),
// others: [{round, kind, node_id, payload}]}.
function byRound(events) {
  const rounds = new Map();
  const others = [];
  let done = 0; // the last round finished (or resumed from)
  for (const e of events) {
    const p = e.payload || {};
    if (e.kind === "round") {
      done = Number(p.round);
      rounds.set(done, p); // a round done again after a resume replaces the dropped one
    } else if (e.kind === "resumed") {
      done = Number(p.round);
    } else {
      others.push({ ...e, round: e.round ?? p.round ?? done + 1 });
    }
  }
  return { rounds: new Map([...rounds].sort((a, b) => a[0] - b[0])), others };
}

function skeleton() {
  return `
    <div class="jobs-detail-head" id="learn-head"></div>
    <div class="grid grid-2 jobs-detail-grid">
      <div class="jobs-pane">
        <h3 id="learn-accuracy-title">Accuracy per round</h3>
        <div id="learn-accuracy-chart" data-testid="learn-accuracy-chart"></div>
        <p class="muted jobs-note" id="learn-accuracy-note"></p>
        <div id="learn-facts"></div>
      </div>
      <div class="jobs-pane">
        <h3>Who teaches whom</h3>
        <div id="learn-transfer" data-testid="learn-transfer"></div>
      </div>
    </div>`;
}

function draw(el, run, grouped) {
  const $ = (id) => el.querySelector(`#${id}`);
  const cfg = run.config || {};
  $("learn-head").innerHTML = `
    <h3>Run ${esc(run.run_id)} · ${esc(run.mode)} on ${esc(run.dataset)}</h3>
    ${statusBadge(run.status)}
    <span class="muted">${fmt(cfg.nodes)} nodes, ${esc(cfg.partition || "iid")} split, ${esc(cfg.model_type || "")}
      · round ${fmt(run.current_round)} / ${fmt(run.total_rounds)} · ${esc(duration(run.started_at, run.finished_at))}</span>
    ${run.error ? `<p class="error-text" data-testid="learn-error">${esc(run.error)}</p>` : ""}`;

  const accuracy = accuracySeries(run.mode, grouped.rounds);
  $("learn-accuracy-title").textContent = accuracy.title;
  lineChart($("learn-accuracy-chart"), {
    series: accuracy.series,
    xLabel: "round",
    yLabel: accuracy.yLabel,
    height: 220,
    xFormat: (v) => (Number.isInteger(v) ? String(v) : ""),
    yFormat: (v) => `${Math.round(v * 100)}%`,
  });
  $("learn-accuracy-note").textContent = accuracy.note;
  $("learn-facts").innerHTML = facts(summary(run, grouped.rounds), "learn-facts");

  const transfer = $("learn-transfer");
  if (run.mode === "distill") transfer.innerHTML = distillTransfer(grouped);
  else if (run.mode === "ensemble") transfer.innerHTML = ensembleTransfer(grouped);
  else if (FEDERATED.has(run.mode)) federatedTransfer(transfer, run.mode, grouped);
  else transfer.innerHTML = `<p class="muted">Centralized: one model trained on every example, the yardstick for the other modes. No nodes, nothing to teach.</p>`;
}

// One line per node, x = round.
function accuracySeries(mode, rounds) {
  const perNode = mode === "distill" ? "knowledge" : mode === "ensemble" ? "members" : null;
  if (perNode) {
    const nodes = new Set();
    for (const p of rounds.values()) Object.keys(p[perNode] || {}).forEach((n) => nodes.add(n));
    const names = [...nodes].sort(byNodeNumber);
    const series = names.map((n) => ({
      name: n,
      points: [...rounds].map(([r, p]) => [r, num(p[perNode]?.[n])]),
    }));
    const validation = mode === "distill";
    return {
      title: "Accuracy per round, per node",
      yLabel: validation ? "validation accuracy" : "test accuracy",
      series,
      note: validation
        ? "Each node's knowledge level: its accuracy on the validation split, measured every round (what teachers are chosen by)."
        : "Each member's accuracy on the test split; the ensemble's own is in the facts below.",
    };
  }
  const points = (key) => [...rounds].map(([r, p]) => [r, num(p[key])]);
  const series = [{ name: "global model · test", points: points("test_accuracy") }];
  if ([...rounds.values()].some((p) => p.val_accuracy != null)) {
    series.push({ name: "global model · validation", points: points("val_accuracy"), color: "#13a10e" });
  }
  return {
    title: "Accuracy per round",
    yLabel: "accuracy",
    series,
    note: mode === "centralized"
      ? "One model on all the training data."
      : "Federated: the nodes share one global model, so its accuracy is every node's; the nodes' own training loss is on the right.",
  };
}

function summary(run, rounds) {
  const last = [...rounds.values()].pop() || {};
  const pairs = [
    ["mode", esc(run.mode)],
    ["test accuracy", pct(run.result?.test_accuracy ?? last.test_accuracy)],
  ];
  if (run.mode === "distill") {
    pairs.push(["students (taught)", pct(last.student_accuracy)]);
    pairs.push(["scratch twins (never taught)", pct(last.scratch_accuracy)]);
    if (last.student_accuracy != null && last.scratch_accuracy != null) {
      const gain = (last.student_accuracy - last.scratch_accuracy) * 100;
      pairs.push(["what teaching added", `<strong>${gain >= 0 ? "+" : ""}${fmt(gain, 1)} points</strong>`]);
    }
    pairs.push(["lessons given", fmt(last.teaching_events)]);
  } else if (run.mode === "ensemble") {
    pairs.push(["ensemble", pct(last.ensemble_accuracy)]);
    pairs.push(["best member", pct(last.best_member_accuracy)]);
  } else if (last.val_accuracy != null) {
    pairs.push(["validation accuracy", pct(last.val_accuracy)]);
  }
  pairs.push(["rounds recorded", fmt(rounds.size)]);
  return pairs;
}

// distill: every lesson, summed per teacher→student pair, then round by round.
function distillTransfer({ rounds, others }) {
  const lessons = others.filter((e) => e.kind === "taught");
  if (!lessons.length) {
    const paired = [...rounds.values()].some((p) => (p.pairs || []).length);
    return `<p class="muted" data-testid="learn-transfer-empty">${
      paired ? "Pairs were formed; no lesson recorded yet." : "Nobody has taught yet: a teacher must be above the knowledge threshold and clearly ahead of its student."
    }</p>`;
  }
  const byPair = new Map();
  for (const e of lessons) {
    const p = e.payload || {};
    const key = `${p.teacher}→${e.node_id ?? p.node_id}`;
    const entry = byPair.get(key) || { teacher: p.teacher, student: e.node_id ?? p.node_id, rounds: [], gain: 0 };
    entry.rounds.push(e.round);
    entry.gain += (Number(p.knowledge_level) || 0) - (Number(p.knowledge_before) || 0);
    byPair.set(key, entry);
  }
  const pairRows = [...byPair.values()]
    .map(
      (e) => `<tr data-testid="learn-pair" data-teacher="${esc(e.teacher)}" data-student="${esc(e.student)}">
        <td><strong>${esc(e.teacher)}</strong> → ${esc(e.student)}</td><td class="num">${fmt(e.rounds.length)}</td>
        <td>${esc(spanOf(e.rounds))}</td><td class="num">${signedPoints(e.gain)}</td></tr>`,
    )
    .join("");
  const recent = lessons.slice(-SHOWN_ROUNDS * 4);
  const lessonRows = recent
    .map((e) => {
      const p = e.payload || {};
      return `<tr data-testid="learn-transfer-row" data-round="${esc(e.round)}">
        <td class="num">${fmt(e.round)}</td><td><strong>${esc(p.teacher)}</strong> → ${esc(e.node_id ?? p.node_id)}</td>
        <td class="num">${pct(p.knowledge_before)} → ${pct(p.knowledge_level)}</td><td class="num">${fmt(p.loss, 3)}</td></tr>`;
    })
    .join("");
  return `
    <table class="jobs-compact" data-testid="learn-pairs">
      <thead><tr><th>Teacher → student</th><th class="num">Lessons</th><th>Rounds</th><th class="num">Student gained</th></tr></thead>
      <tbody>${pairRows}</tbody>
    </table>
    ${timeline(byPair, rounds)}
    <div class="jobs-scroll">
      <table class="jobs-compact" data-testid="learn-lessons">
        <thead><tr><th class="num">Round</th><th>Lesson</th><th class="num">Student knowledge</th><th class="num">Loss</th></tr></thead>
        <tbody>${lessonRows}</tbody>
      </table>
    </div>
    ${lessons.length > recent.length ? `<p class="muted jobs-note">The latest ${fmt(recent.length)} of ${fmt(lessons.length)} lessons.</p>` : ""}`;
}

// The teacher–student graph over time: a row per teacher → student pair, a cell per round
// (the latest SHOWN_ROUNDS), filled where that pair had lessons, darker for more of them.
function timeline(byPair, rounds) {
  const taught = [...byPair.values()].flatMap((e) => e.rounds);
  const last = Math.max(1, ...rounds.keys(), ...taught);
  const first = Math.max(1, last - SHOWN_ROUNDS + 1);
  const cell = 18;
  const label = 130;
  const rows = [...byPair.values()]
    .map((e, i) => {
      const counts = new Map();
      for (const r of e.rounds) counts.set(r, (counts.get(r) || 0) + 1);
      const cells = [...counts]
        .filter(([r]) => r >= first)
        .map(
          ([r, n]) => `<rect data-testid="learn-timeline-cell" data-round="${r}" x="${label + (r - first) * cell}" y="${i * cell}"
            width="${cell - 2}" height="${cell - 2}" style="fill: var(--accent); fill-opacity: ${Math.min(1, 0.3 + 0.2 * n)}">
            <title>round ${r}: ${esc(e.teacher)} → ${esc(e.student)}, ${n} lesson${n === 1 ? "" : "s"}</title></rect>`,
        )
        .join("");
      return `<text x="${label - 6}" y="${i * cell + cell - 3}" text-anchor="end" font-size="11">${esc(e.teacher)} → ${esc(e.student)}</text>${cells}`;
    })
    .join("");
  const width = label + (last - first + 1) * cell;
  const height = byPair.size * cell + 18;
  const every = last - first < 30 ? 1 : 10; // a round number under every column, or every 10th
  const ticks = [];
  for (let r = first; r <= last; r += 1) {
    if (r === first || r === last || r % every === 0) {
      ticks.push(`<text x="${label + (r - first) * cell + (cell - 2) / 2}" y="${height - 4}" font-size="10" text-anchor="middle">${r}</text>`);
    }
  }
  return `
    <p class="muted jobs-note">Lessons per round (darker: more):</p>
    <svg data-testid="learn-timeline" width="${width + 4}" height="${height}" role="img" aria-label="who taught whom, per round" style="display: block; margin-bottom: 10px">
      ${rows}${ticks.join("")}
    </svg>`;
}

// ensemble: from round 2 every node learns from its peers' knowledge-weighted predictions.
function ensembleTransfer({ rounds, others }) {
  const collab = others.filter((e) => e.kind === "learned" && (e.payload || {}).event === "collaboration");
  if (!collab.length) {
    return `<p class="muted" data-testid="learn-transfer-empty">Round 1 is local learning only; from round 2 each node learns from its peers' weighted ensemble.</p>`;
  }
  const recent = collab.slice(-SHOWN_ROUNDS * 8);
  const rows = recent
    .map((e) => {
      const p = e.payload || {};
      const peers = (p.peers || []).map((peer, i) => `${esc(peer)} <span class="muted">${fmt((p.peer_weights || [])[i], 2)}</span>`).join(", ");
      return `<tr data-testid="learn-transfer-row" data-round="${esc(e.round)}">
        <td class="num">${fmt(e.round)}</td><td><strong>${esc(e.node_id ?? p.node_id)}</strong> ← ${peers}</td>
        <td class="num">${pct(p.knowledge_before)} → ${pct(p.knowledge_level)}</td></tr>`;
    })
    .join("");
  const last = [...rounds.values()].pop() || {};
  const weights = Object.entries(last.weights || {})
    .map(([n, w]) => `<span class="chip">${esc(n)} ${fmt(w, 2)}</span>`)
    .join("");
  return `
    <p class="muted jobs-note">Each node learns from its peers' predictions, weighted by their knowledge (weights shown after each peer).${weights ? ` Ensemble weights now: ${weights}` : ""}</p>
    <div class="jobs-scroll">
      <table class="jobs-compact" data-testid="learn-lessons">
        <thead><tr><th class="num">Round</th><th>Learner ← peers (weight)</th><th class="num">Knowledge</th></tr></thead>
        <tbody>${rows}</tbody>
      </table>
    </div>`;
}

// Federated: nobody teaches; each node trains locally and the server aggregates.
function federatedTransfer(el, mode, { others }) {
  const updates = others.filter((e) => e.kind === "update");
  const nodes = [...new Set(updates.map((e) => e.node_id ?? e.payload?.node_id))].sort(byNodeNumber);
  el.innerHTML = `
    <p class="muted jobs-note" data-testid="learn-transfer-empty">No node teaches another in ${esc(mode)}: every round each node trains on its own share and sends its weights to the server, which aggregates them into the next global model.</p>
    <div id="learn-loss-chart" data-testid="learn-loss-chart"></div>`;
  const series = nodes.map((n) => ({
    name: n,
    points: updates.filter((e) => (e.node_id ?? e.payload?.node_id) === n).map((e) => [e.round, num(e.payload?.["train-loss"])]),
  }));
  lineChart(el.querySelector("#learn-loss-chart"), {
    series,
    xLabel: "round",
    yLabel: "local training loss",
    height: 180,
    xFormat: (v) => (Number.isInteger(v) ? String(v) : ""),
  });
}

function num(v) {
  return v === null || v === undefined || !Number.isFinite(Number(v)) ? null : Number(v);
}

function pct(v) {
  return v === null || v === undefined ? "—" : `${fmt(Number(v) * 100, 1)}%`;
}

function signedPoints(delta) {
  const points = delta * 100;
  return `${points >= 0 ? "+" : ""}${fmt(points, 1)} pts`;
}

function spanOf(list) {
  const sorted = [...new Set(list)].sort((a, b) => a - b);
  if (!sorted.length) return "—";
  return sorted.length === 1 ? `${sorted[0]}` : `${sorted[0]}–${sorted[sorted.length - 1]}`;
}

function byNodeNumber(a, b) {
  const na = Number(String(a).split("-").pop());
  const nb = Number(String(b).split("-").pop());
  return Number.isFinite(na) && Number.isFinite(nb) && na !== nb ? na - nb : String(a).localeCompare(String(b));
}
