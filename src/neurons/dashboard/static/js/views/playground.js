// Playground: chat with any model through the gateway's /api/chat, streamed token by token,
// with a system prompt and the common options. The conversation lives in this page only.

import { api, esc, fmt, fmtMs, ndjson } from "../api.js";

const STORE = "neurons.dashboard.playground";

export async function render(root, ctx) {
  const saved = loadSettings();
  root.innerHTML = `
    <section class="grid grid-side">
      <form class="card settings" id="settings">
        <h2>Settings</h2>
        <label>Model<select name="model" id="model" data-testid="model"></select></label>
        <label>System prompt<textarea name="system" rows="4" placeholder="You are a helpful assistant."></textarea></label>
        <label>Temperature <span class="muted" id="temp-value"></span>
          <input name="temperature" type="range" min="0" max="2" step="0.05"></label>
        <label>Max tokens (num_predict)<input name="num_predict" type="number" min="-1" max="131072"></label>
        <label>Top p<input name="top_p" type="number" min="0" max="1" step="0.05"></label>
        <label>Seed<input name="seed" type="number" placeholder="random"></label>
        <button class="btn" type="button" id="clear">Clear conversation</button>
      </form>
      <section class="card chat">
        <div class="messages" id="messages" data-testid="messages">
          <div class="muted empty" id="hint">Send a message to start.</div>
        </div>
        <form class="composer" id="composer">
          <textarea id="prompt" rows="2" placeholder="Message (Enter sends, Shift+Enter breaks the line)"
                    data-testid="prompt"></textarea>
          <button class="btn btn-primary" id="send" type="submit" data-testid="send">Send</button>
          <button class="btn" id="stop" type="button" hidden>Stop</button>
        </form>
      </section>
    </section>`;

  const $ = (sel) => root.querySelector(sel);
  const settings = $("#settings");
  for (const [k, v] of Object.entries(saved)) if (settings.elements[k]) settings.elements[k].value = v;
  const showTemp = () => ($("#temp-value").textContent = settings.elements.temperature.value);
  showTemp();

  const { models } = await api("/api/tags");
  // Embedding-only models cannot chat; a list without capabilities (an old node) is kept whole.
  const chatty = models.filter((m) => !m.capabilities || m.capabilities.includes("completion"));
  $("#model").innerHTML = chatty.length
    ? chatty.map((m) => `<option>${esc(m.name || m.model)}</option>`).join("")
    : `<option value="">no models</option>`;
  if (saved.model && chatty.some((m) => (m.name || m.model) === saved.model)) $("#model").value = saved.model;

  settings.addEventListener("input", () => {
    showTemp();
    saveSettings(settings);
  });

  const history = [];
  let running = null;

  function bubble(role, text = "") {
    $("#hint")?.remove();
    const el = document.createElement("div");
    el.className = `msg msg-${role}`;
    el.textContent = text;
    $("#messages").appendChild(el);
    el.scrollIntoView({ block: "end" });
    return el;
  }

  function options() {
    const f = settings.elements;
    const out = { temperature: Number(f.temperature.value) };
    if (f.num_predict.value !== "") out.num_predict = Number(f.num_predict.value);
    if (f.top_p.value !== "") out.top_p = Number(f.top_p.value);
    if (f.seed.value !== "") out.seed = Number(f.seed.value);
    return out;
  }

  async function send() {
    const text = $("#prompt").value.trim();
    const model = $("#model").value;
    if (!text || !model || running) return;
    $("#prompt").value = "";
    history.push({ role: "user", content: text });
    bubble("user", text);
    const reply = bubble("assistant");
    reply.dataset.testid = "reply";
    reply.dataset.state = "streaming";
    reply.dataset.chunks = "0";
    const system = settings.elements.system.value.trim();
    const messages = system ? [{ role: "system", content: system }, ...history] : [...history];
    running = new AbortController();
    $("#send").hidden = true;
    $("#stop").hidden = false;
    let content = "";
    try {
      const last = await ndjson(
        "/api/chat",
        { model, messages, stream: true, options: options() },
        (chunk) => {
          const piece = chunk.message?.content || "";
          if (!piece) return;
          content += piece;
          reply.textContent = content; // one DOM update per token, so the answer grows live
          reply.dataset.chunks = String(Number(reply.dataset.chunks) + 1);
          reply.scrollIntoView({ block: "end" });
        },
        { signal: running.signal },
      );
      history.push({ role: "assistant", content });
      stats(last);
      reply.dataset.state = "done";
    } catch (error) {
      reply.dataset.state = error.name === "AbortError" ? "stopped" : "error";
      if (error.name === "AbortError") {
        history.push({ role: "assistant", content });
      } else {
        history.pop(); // the question got no answer: let it be asked again
        reply.textContent = content || "";
        const note = bubble("stats", `error: ${error.message}`);
        note.className = "msg-stats error-text";
      }
    } finally {
      running = null;
      $("#send").hidden = false;
      $("#stop").hidden = true;
    }
  }

  function stats(last) {
    if (!last) return;
    const tokens = last.eval_count;
    const seconds = (last.eval_duration || 0) / 1e9;
    const parts = [
      tokens !== undefined ? `${fmt(tokens)} tokens` : "",
      seconds ? `${fmt(tokens / seconds, 1)} tokens/s` : "",
      last.total_duration ? `total ${fmtMs(last.total_duration / 1e6)}` : "",
      last.done_reason ? `stop: ${last.done_reason}` : "",
    ].filter(Boolean);
    const el = bubble("stats", parts.join(" · "));
    el.className = "msg-stats";
    el.dataset.testid = "reply-stats";
  }

  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("#prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send();
    }
  });
  $("#stop").addEventListener("click", () => running && running.abort());
  $("#clear").addEventListener("click", () => {
    if (running) running.abort();
    history.length = 0;
    $("#messages").innerHTML = `<div class="muted empty" id="hint">Send a message to start.</div>`;
  });
  $("#prompt").focus();
  return () => running && running.abort();
}

function loadSettings() {
  try {
    return { temperature: "0.7", num_predict: "256", ...JSON.parse(localStorage.getItem(STORE) || "{}") };
  } catch {
    return { temperature: "0.7", num_predict: "256" };
  }
}

function saveSettings(form) {
  const data = {};
  for (const el of form.elements) if (el.name) data[el.name] = el.value;
  try {
    localStorage.setItem(STORE, JSON.stringify(data));
  } catch {
    // no storage: settings last as long as the page
  }
}
