// Jobs: fine-tuning jobs, optimization sessions and learning runs, each as a table (newest
// first) with a detail panel for the selected one (loss curve and logs; convergence, trials
// and "apply"; accuracy per node and who teaches whom).
//
// Live: the event stream's job.transition events refresh the table of the job's kind and,
// when it is the one shown, its detail. Progress inside a run (a training step, a trial, a
// round) is not an event, so the panel of a job that is pending or running is also read
// again every POLL_MS until it ends.
//
// The three kinds live in jobs_finetune.js, jobs_optimize.js and jobs_learning.js; each is a
// spec {key, kind, title, columns, list(), detail()} that the panel below drives. They import
// the small helpers at the bottom of this file back (a cycle ES modules resolve: the helpers
// are function declarations, only called once a view renders).

import { api, esc, streamSSE } from "../api.js";
import { finetune } from "./jobs_finetune.js";
import { learning } from "./jobs_learning.js";
import { optimize } from "./jobs_optimize.js";

const SPECS = [finetune, optimize, learning];
const POLL_MS = 3000;
const EVENT_PAGE = 5000; // the API's largest page
const ACTIVE = new Set(["pending", "running"]);

export async function render(root, ctx) {
  linkStyles();
  root.innerHTML = `
    <div id="jobs-view" class="jobs" data-testid="jobs-view">
      <div class="jobs-bar">
        <nav class="jobs-jump" aria-label="job kinds">
          ${SPECS.map((s) => `<a href="#jobs-${s.key}" data-jump="${s.key}">${esc(s.title)}</a>`).join("")}
        </nav>
        <span id="jobs-live" class="muted" data-testid="jobs-live">connecting to the event stream…</span>
      </div>
      ${SPECS.map(card).join("")}
    </div>`;
  // In-page jumps without touching the hash (the hash is the router's).
  root.querySelector(".jobs-jump").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-jump]");
    if (!link) return;
    event.preventDefault();
    root.querySelector(`#jobs-${link.dataset.jump}`).scrollIntoView({ behavior: "smooth" });
  });

  const panels = SPECS.map((spec) => new Panel(root, spec, ctx));
  await Promise.all(panels.map((p) => p.start()));

  const live = root.querySelector("#jobs-live");
  const stream = await follow(live, ctx, (payload) => {
    const panel = panels.find((p) => p.spec.kind === payload.job_kind);
    if (panel) panel.transition(payload);
  });

  const timer = setInterval(() => panels.forEach((p) => p.poll()), POLL_MS);
  let resizing = null;
  const onResize = () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => panels.forEach((p) => p.redraw()), 250);
  };
  window.addEventListener("resize", onResize);

  return () => {
    if (stream) stream.close();
    clearInterval(timer);
    clearTimeout(resizing);
    window.removeEventListener("resize", onResize);
    panels.forEach((p) => p.close());
  };
}

function card(spec) {
  const k = spec.key;
  return `
    <section class="card jobs-card" id="jobs-${k}" data-testid="jobs-${k}">
      <div class="card-head">
        <h2>${esc(spec.title)}</h2>
        <span class="muted" id="${k}-count" data-testid="${k}-count"></span>
      </div>
      <p class="error-text" id="${k}-error" role="alert" hidden></p>
      <div class="table-wrap jobs-list">
        <table data-testid="${k}-table" id="${k}-table">
          <thead><tr>${spec.columns.map((c) => `<th class="${c.cls || ""}">${esc(c.label)}</th>`).join("")}</tr></thead>
          <tbody id="${k}-rows"></tbody>
        </table>
      </div>
      <div class="jobs-detail" id="${k}-detail" data-testid="${k}-detail" hidden></div>
    </section>`;
}

// One kind's table and detail: selection, refreshes that never overlap, polling while the
// selected job (or any listed one) is active.
class Panel {
  constructor(root, spec, ctx) {
    this.spec = spec;
    this.ctx = ctx;
    const k = spec.key;
    this.rowsEl = root.querySelector(`#${k}-rows`);
    this.countEl = root.querySelector(`#${k}-count`);
    this.errorEl = root.querySelector(`#${k}-error`);
    this.detailEl = root.querySelector(`#${k}-detail`);
    this.rows = [];
    this.selected = ctx.params ? ctx.params.get(k) : null;
    this.closed = false;
    this.listing = null; // the list read in flight, so refreshes coalesce
    this.showing = null; // the detail read in flight
    this.again = { list: false, detail: false };
    this.rowsEl.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row) this.select(row.dataset.id);
    });
    this.rowsEl.addEventListener("keydown", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.select(row.dataset.id);
      }
    });
  }

  async start() {
    await this.refreshList();
    // A deep link to a job no longer listed falls back to the newest.
    if (this.selected && !this.find(this.selected)) this.selected = null;
    if (!this.selected && this.rows.length) this.selected = this.spec.id(this.rows[0]);
    this.drawRows();
    if (this.selected) await this.refreshDetail(true);
  }

  find(id) {
    return this.rows.find((r) => this.spec.id(r) === String(id)) || null;
  }

  select(id) {
    if (String(id) === this.selected) return;
    this.selected = String(id);
    this.drawRows();
    rememberSelection(this.spec.key, this.selected);
    this.refreshDetail(true);
  }

  refreshList() {
    if (this.listing) {
      this.again.list = true;
      return this.listing;
    }
    this.listing = (async () => {
      try {
        this.rows = await this.spec.list();
        this.showError(null);
      } catch (error) {
        this.showError(error);
      }
      if (!this.closed) this.drawRows();
    })().finally(() => {
      this.listing = null;
      if (this.again.list && !this.closed) {
        this.again.list = false;
        this.refreshList();
      }
    });
    return this.listing;
  }

  refreshDetail(fresh = false) {
    if (!this.selected) return Promise.resolve();
    if (this.showing) {
      this.again.detail = true;
      this.again.fresh = this.again.fresh || fresh;
      return this.showing;
    }
    const id = this.selected;
    const el = this.detailEl;
    if (fresh || el.dataset.id !== id) {
      el.dataset.id = id;
      el.dataset.state = "loading";
      el.hidden = false;
      el.innerHTML = `<p class="muted">Loading ${esc(this.spec.noun)} ${esc(id)}…</p>`;
      fresh = true;
    }
    this.showing = (async () => {
      try {
        await this.spec.detail(el, id, { ...this.ctx, fresh, row: this.find(id) });
        if (el.dataset.id === id) {
          el.dataset.state = "ready";
          el.dataset.loads = String(Number(el.dataset.loads || 0) + 1);
        }
      } catch (error) {
        if (el.dataset.id === id) {
          el.dataset.state = "error";
          el.innerHTML = `<p class="error-text">${esc(this.spec.noun)} ${esc(id)}: ${esc(message(error))}</p>`;
        }
      }
    })().finally(() => {
      this.showing = null;
      if (this.again.detail && !this.closed) {
        const again = this.again.fresh || this.selected !== id;
        this.again.detail = false;
        this.again.fresh = false;
        this.refreshDetail(again);
      }
    });
    return this.showing;
  }

  // A job.transition of this kind: its row changed, and maybe the job shown.
  transition(payload) {
    this.refreshList();
    if (String(payload.job_id) === this.selected) this.refreshDetail();
    else if (!this.selected) {
      this.selected = String(payload.job_id);
      this.refreshDetail(true);
    }
  }

  poll() {
    if (this.rows.some((r) => ACTIVE.has(this.spec.state(r)))) this.refreshList();
    const shown = this.find(this.selected);
    if (shown && ACTIVE.has(this.spec.state(shown))) this.refreshDetail();
  }

  redraw() {
    if (this.selected) this.refreshDetail(true);
  }

  drawRows() {
    const { spec } = this;
    this.countEl.textContent = `${this.rows.length} ${this.rows.length === 1 ? spec.noun : spec.nouns}`;
    if (!this.rows.length) {
      this.rowsEl.innerHTML = `<tr><td colspan="${spec.columns.length}" class="muted">${esc(spec.empty)}</td></tr>`;
      return;
    }
    this.rowsEl.innerHTML = this.rows
      .map((r) => {
        const id = spec.id(r);
        const on = id === this.selected;
        return `<tr data-testid="${spec.key}-row" data-id="${esc(id)}" data-state="${esc(spec.state(r))}"
            class="jobs-row${on ? " selected" : ""}" tabindex="0" aria-selected="${on}">
          ${spec.columns.map((c) => `<td class="${c.cls || ""}">${c.cell(r)}</td>`).join("")}</tr>`;
      })
      .join("");
  }

  showError(error) {
    this.errorEl.hidden = !error;
    this.errorEl.textContent = error ? `Could not list ${this.spec.nouns}: ${message(error)}` : "";
  }

  close() {
    this.closed = true;
    if (this.spec.close) this.spec.close();
  }
}

// Follows job.transition events from now on: the cursor is where the JSON pages end (a short
// page has seen every event so far), so past transitions are not replayed.
async function follow(live, ctx, onTransition) {
  const kind = "job.transition";
  let after = 0;
  try {
    for (let i = 0; i < 20; i += 1) {
      const page = await api(`/api/ai/events?kind=${kind}&after=${after}&limit=${EVENT_PAGE}`);
      after = page.last_id;
      if (page.events.length < EVENT_PAGE) break;
    }
  } catch (error) {
    live.textContent = `no live updates: ${message(error)}`;
    return null;
  }
  live.textContent = "live: waiting for job transitions";
  live.dataset.state = "connected";
  if (ctx.setLive) ctx.setLive(true);
  return streamSSE(`/api/ai/events?kind=${kind}&after=${after}`, ({ event, data }) => {
    if (event !== kind || !data || typeof data.payload !== "object") return;
    const p = data.payload;
    live.textContent = `live · ${p.job_kind} ${p.job_id}: ${p.previous} → ${p.status} (${timeOf(data.at)})`;
    live.dataset.events = String(Number(live.dataset.events || 0) + 1);
    onTransition(p);
  });
}

function rememberSelection(key, id) {
  // The selection goes into the hash's query so a reload (or a shared link) shows the same
  // jobs; replaceState fires no hashchange, so the view is not rendered again.
  const [name, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const params = new URLSearchParams(query);
  params.set(key, id);
  history.replaceState(null, "", `#/${name || "jobs"}?${params}`);
}

function linkStyles() {
  if (document.getElementById("jobs-css")) return;
  const link = document.createElement("link");
  link.id = "jobs-css";
  link.rel = "stylesheet";
  link.href = new URL("../../css/jobs.css", import.meta.url).href;
  document.head.appendChild(link);
}

function timeOf(iso) {
  const date = iso ? new Date(iso) : new Date();
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString("en-GB", { hour12: false });
}

// -- helpers the kinds share ----------------------------------------------------------------

export function message(error) {
  return error && error.message ? error.message : String(error);
}

const BADGES = {
  completed: "badge-ok",
  running: "badge-accent",
  pending: "",
  failed: "badge-bad",
  cancelled: "badge-warn",
};

// A status badge; `shown` is the text when it differs from the state (a running job's phase).
export function statusBadge(state, shown) {
  const cls = BADGES[state] ?? "badge-accent";
  return `<span class="badge ${cls}" data-status="${esc(state)}">${esc(shown || state)}</span>`;
}

export function progressCell(fraction) {
  const pct = Math.max(0, Math.min(100, (Number(fraction) || 0) * 100));
  return `<span class="meter"><span style="width:${pct.toFixed(1)}%"></span></span>${pct.toFixed(0)}%`;
}

export function ago(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return esc(iso);
  const s = Math.max(0, (Date.now() - date.getTime()) / 1000);
  const text =
    s < 60 ? `${Math.round(s)} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : s < 86400 ? `${Math.round(s / 3600)} h ago` : date.toLocaleDateString("en-GB");
  return `<time datetime="${esc(iso)}" title="${esc(date.toLocaleString("en-GB"))}">${text}</time>`;
}

export function duration(startIso, endIso) {
  if (!startIso) return "—";
  const end = endIso ? new Date(endIso) : new Date();
  return seconds((end.getTime() - new Date(startIso).getTime()) / 1000);
}

export function seconds(s) {
  if (s === null || s === undefined || !Number.isFinite(Number(s))) return "—";
  const v = Math.max(0, Number(s));
  if (v < 90) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
  if (v < 5400) return `${Math.round(v / 60)} min`;
  return `${(v / 3600).toFixed(1)} h`;
}

// A definition list of [label, html] pairs (values are already escaped HTML).
export function facts(pairs, testid = "") {
  const items = pairs
    .filter(([, value]) => value !== null && value !== undefined && value !== "")
    .map(([label, value]) => `<dt>${esc(label)}</dt><dd>${value}</dd>`)
    .join("");
  return `<dl class="jobs-facts"${testid ? ` data-testid="${testid}"` : ""}>${items}</dl>`;
}

export function chips(object) {
  const entries = Object.entries(object || {});
  if (!entries.length) return '<span class="muted">—</span>';
  return entries
    .map(([k, v]) => `<span class="chip" data-param="${esc(k)}">${esc(k)} = ${esc(typeof v === "number" ? +v.toPrecision(4) : v)}</span>`)
    .join("");
}
