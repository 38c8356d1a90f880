// Keys and audit (admin scope): list, create, rotate and revoke API keys, and read the audit
// trail of mutating calls. A new or rotated secret is shown once, here, and never again: the
// control plane keeps only its hash.

import { api, esc, fmt, fmtTime } from "../api.js";

const AUDIT_LIMIT = 200;
const STATE_BADGE = { active: "badge-ok", revoked: "badge-bad", expired: "badge-warn" };

export async function render(root, ctx) {
  if (!ctx.can("admin")) {
    root.innerHTML = `<div class="card empty">Keys and the audit trail need an admin key
      (this one has scope ${esc(ctx.session.scope || "none")}).</div>`;
    return undefined;
  }
  root.innerHTML = `
    <section class="card">
      <h2>Create a key</h2>
      <form id="create-form" class="form-row">
        <label>Name<input name="name" required maxlength="64" placeholder="ci-bot" data-testid="new-key-name"></label>
        <label>Scope<select name="scope">
          <option>read</option><option selected>inference</option><option>manage</option><option>admin</option>
        </select></label>
        <label>Models<input name="models" placeholder="all (or a, b)"></label>
        <label>Requests / min<input name="rpm" type="number" min="1"></label>
        <label>Tokens / min<input name="tpm" type="number" min="1"></label>
        <label>Parallel<input name="max_parallel" type="number" min="1"></label>
        <label>Expires<input name="expires" placeholder="30d, 12h"></label>
        <button class="btn btn-primary" type="submit" data-testid="create-key">Create</button>
      </form>
      <div id="secret-box"></div>
    </section>
    <section class="card">
      <div class="card-head"><h2>API keys</h2><span class="muted" id="keys-note"></span></div>
      <div class="table-wrap"><table data-testid="keys-table">
        <thead><tr><th>Name</th><th>Scope</th><th>Models</th><th>Limits</th><th>State</th>
          <th class="num">Requests</th><th class="num">Tokens</th><th>Last used</th><th>Created</th><th></th></tr></thead>
        <tbody id="keys-body"></tbody>
      </table></div>
    </section>
    <section class="card">
      <div class="card-head"><h2>Audit trail</h2>
        <form id="audit-form" class="form-row" style="flex-wrap:nowrap">
          <label class="inline">Actor<input name="actor" placeholder="any" style="width:140px"></label>
          <label class="inline">Since<select name="since" style="width:110px">
            <option value="1h">1 hour</option><option value="24h" selected>24 hours</option>
            <option value="7d">7 days</option><option value="">all</option></select></label>
          <button class="btn btn-small" type="submit">Refresh</button>
        </form></div>
      <div class="table-wrap"><table data-testid="audit-table">
        <thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Status</th><th>Detail</th></tr></thead>
        <tbody id="audit-body"></tbody>
      </table></div>
    </section>`;

  const $ = (sel) => root.querySelector(sel);

  async function loadKeys() {
    const { keys } = await api("/api/ai/keys");
    $("#keys-note").textContent = `${keys.filter((k) => k.state === "active").length} active of ${keys.length}`;
    $("#keys-body").innerHTML = keys.length
      ? keys.map(keyRow).join("")
      : `<tr><td colspan="10" class="muted">No keys yet: only the master key works.</td></tr>`;
  }

  async function loadAudit() {
    const form = new FormData($("#audit-form"));
    const query = new URLSearchParams({ limit: String(AUDIT_LIMIT) });
    if (form.get("actor")) query.set("actor", form.get("actor").trim());
    if (form.get("since")) query.set("since", form.get("since"));
    const { events } = await api(`/api/ai/audit?${query}`);
    $("#audit-body").innerHTML = events.length
      ? [...events].reverse().map(auditRow).join("")
      : `<tr><td colspan="6" class="muted">Nothing in this window.</td></tr>`;
  }

  function showSecret(name, secret) {
    $("#secret-box").innerHTML = `<div class="secret" data-testid="secret">
      Secret for <strong>${esc(name)}</strong>, shown this once:
      <div><code>${esc(secret)}</code>
      <button class="btn btn-small" type="button" id="copy-secret">Copy</button></div></div>`;
    $("#copy-secret").addEventListener("click", () =>
      navigator.clipboard.writeText(secret).then(
        () => ctx.toast("Copied", "ok"),
        () => ctx.toast("Select the text and copy it", "info"),
      ),
    );
  }

  async function refresh() {
    await Promise.all([loadKeys(), loadAudit()]);
  }

  $("#create-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = { name: form.get("name").trim(), scope: form.get("scope") };
    const models = form.get("models").split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    for (const field of ["rpm", "tpm", "max_parallel"]) {
      if (form.get(field)) body[field] = Number(form.get(field));
    }
    if (form.get("expires").trim()) body.expires = form.get("expires").trim();
    try {
      const created = await api("/api/ai/keys", { method: "POST", body });
      showSecret(created.key.name, created.secret);
      event.target.reset();
      await refresh();
    } catch (error) {
      ctx.toast(error.message, "error");
    }
  });

  $("#keys-body").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const id = button.closest("tr").dataset.key;
    const name = button.closest("tr").dataset.name;
    // Two clicks: the first arms the button, so a stray click breaks no client.
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm");
      button.textContent = button.dataset.action === "revoke" ? "Confirm revoke" : "Confirm rotate";
      return;
    }
    button.disabled = true;
    try {
      if (button.dataset.action === "revoke") {
        await api(`/api/ai/keys/${encodeURIComponent(id)}`, { method: "DELETE" });
        ctx.toast(`Revoked ${name}`, "ok");
      } else {
        const rotated = await api(`/api/ai/keys/${encodeURIComponent(id)}/rotate`, { method: "POST" });
        showSecret(name, rotated.secret);
      }
      await refresh();
    } catch (error) {
      ctx.toast(error.message, "error");
      button.disabled = false;
    }
  });

  $("#audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAudit().catch((error) => ctx.toast(error.message, "error"));
  });

  await refresh();
  return undefined;
}

function keyRow(k) {
  const limits = [
    k.rpm ? `${fmt(k.rpm)} rpm` : "",
    k.tpm ? `${fmt(k.tpm)} tpm` : "",
    k.max_parallel ? `${fmt(k.max_parallel)} parallel` : "",
    k.expires_at ? `until ${fmtTime(k.expires_at)}` : "",
  ].filter(Boolean);
  const live = k.state === "active";
  const actions = live
    ? `<button class="btn btn-small" data-action="rotate" type="button">Rotate</button>
       <button class="btn btn-small btn-danger" data-action="revoke" type="button">Revoke</button>`
    : "";
  return `<tr data-key="${esc(k.id)}" data-name="${esc(k.name)}">
    <td class="nowrap"><strong>${esc(k.name)}</strong><div class="mono muted">${esc(k.prefix)}…</div></td>
    <td><span class="badge badge-accent">${esc(k.scope)}</span></td>
    <td>${(k.models || []).map((m) => `<span class="chip">${esc(m)}</span>`).join("") || '<span class="muted">all</span>'}</td>
    <td>${limits.map(esc).join("<br>") || '<span class="muted">none</span>'}</td>
    <td><span class="badge ${STATE_BADGE[k.state] || ""}">${esc(k.state)}</span></td>
    <td class="num">${fmt(k.requests)}</td><td class="num">${fmt(k.tokens)}</td>
    <td class="nowrap">${esc(short(k.last_used_at))}</td><td class="nowrap">${esc(short(k.created_at))}</td>
    <td class="actions">${actions}</td></tr>`;
}

function auditRow(e) {
  const ok = e.status >= 200 && e.status < 300;
  return `<tr><td class="nowrap">${esc(fmtTime(e.at))}</td><td>${esc(e.actor)}</td><td class="mono">${esc(e.action)}</td>
    <td>${esc(e.target || "")}</td>
    <td><span class="badge ${ok ? "badge-ok" : "badge-bad"}">${esc(e.status)}</span></td>
    <td class="muted mono">${esc(detailText(e.detail))}</td></tr>`;
}

// The action column already says the method and path: show what else the trail kept.
function detailText(detail) {
  if (!detail || typeof detail !== "object") return detail ? String(detail) : "";
  const { method, path, ...rest } = detail;
  return Object.keys(rest).length ? JSON.stringify(rest) : "";
}

// Day and minute: enough to tell keys apart, narrow enough to keep the actions in view.
function short(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  const options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString("en-GB", options);
}
