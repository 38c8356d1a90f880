// The one door to the control plane: every call sends the stored key, every refusal becomes
// an ApiError, and a 401 anywhere asks the user for a key (the shell listens for
// "neurons:unauthorized" on window). The views import from here, never call fetch() themselves.

const KEY_STORAGE = "neurons.dashboard.key";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage blocked (private mode, file://): run without a key
  }
}

export function setKey(k) {
  try {
    if (k) localStorage.setItem(KEY_STORAGE, k);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nowhere to keep it: the prompt will ask again on the next 401
  }
  window.dispatchEvent(new CustomEvent("neurons:key", { detail: { key: k || "" } }));
}

function headers(extra = {}) {
  const out = { ...extra };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

function unauthorized(message) {
  window.dispatchEvent(new CustomEvent("neurons:unauthorized", { detail: { message } }));
}

// The message a refusal carries: the management envelope and Ollama both say {"error": "..."};
// the OpenAI surface nests it ({"error": {"message": ...}}).
async function toError(response) {
  let body = null;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    body = await response.json();
    const error = body && body.error;
    if (typeof error === "string") message = error;
    else if (error && typeof error.message === "string") message = error.message;
  } catch {
    // not JSON (a proxy's HTML page): keep the status line
  }
  if (response.status === 401) unauthorized(message);
  return new ApiError(response.status, message, body);
}

export async function api(path, { method = "GET", body = undefined, raw = false, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await toError(response);
  if (raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null; // /api/copy and /api/delete answer with no body
}

// Lines of a streamed body, as they complete (the last one may lack its newline).
async function* lines(response, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 1);
        yield line.endsWith("\r") ? line.slice(0, -1) : line;
      }
    }
    buffer += decoder.decode();
    if (buffer) yield buffer;
  } finally {
    if (signal && !signal.aborted) reader.cancel().catch(() => {});
  }
}

// A POST answered with NDJSON (Ollama's /api/chat, /api/pull): onObject for each object as it
// arrives; resolves with the last one. An {"error": ...} line mid-stream throws, as Ollama's
// clients do.
export async function ndjson(path, body, onObject, { signal } = {}) {
  const response = await api(path, { method: "POST", body, raw: true, signal });
  let last = null;
  for await (const line of lines(response, signal)) {
    if (!line.trim()) continue;
    const object = JSON.parse(line);
    if (object && typeof object.error === "string") throw new ApiError(500, object.error, object);
    last = object;
    onObject(object);
  }
  return last;
}

// Server-sent events over fetch(): EventSource cannot send an Authorization header, and a key
// must never travel in a URL (it would land in access logs and the history). Reconnects after
// a dropped stream, resuming with Last-Event-ID where the server sent ids; after a 401 it waits
// for a new key.
export function streamSSE(path, onEvent) {
  let controller = null;
  let closed = false;
  let lastId = null;
  let retryMs = 2000;
  let timer = null;
  let waitingForKey = false;

  function onKey() {
    if (waitingForKey && !closed) {
      waitingForKey = false;
      connect();
    }
  }
  window.addEventListener("neurons:key", onKey);

  function schedule() {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(connect, retryMs);
  }

  async function connect() {
    if (closed) return;
    controller = new AbortController();
    const extra = { Accept: "text/event-stream" };
    if (lastId !== null) extra["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(path, { headers: headers(extra), signal: controller.signal });
    } catch {
      schedule(); // the plane restarting, or the network gone: try again
      return;
    }
    if (!response.ok) {
      const error = await toError(response);
      if (error.status === 401) waitingForKey = true;
      else schedule();
      return;
    }
    let event = "message";
    let data = [];
    try {
      for await (const line of lines(response, controller.signal)) {
        if (line === "") {
          if (data.length) dispatch(event, data.join("\n"));
          event = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") lastId = value;
        else if (field === "retry" && /^\d+$/.test(value)) retryMs = Number(value);
      }
    } catch {
      // aborted by close(), or the connection broke: schedule() decides
    }
    schedule();
  }

  function dispatch(event, text) {
    let data = text;
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: hand over the text
    }
    try {
      onEvent({ event, data });
    } catch (error) {
      console.warn("SSE handler failed", error);
    }
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      window.removeEventListener("neurons:key", onKey);
      if (controller) controller.abort();
    },
  };
}

export function esc(text) {
  return String(text ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
  );
}

// Numbers for people: "—" for nothing, thousands separators, and `digits` decimals (default:
// none for whole numbers, up to two otherwise).
export function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "—";
  const value = Number(n);
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "-∞";
  const options =
    digits === undefined
      ? { maximumFractionDigits: Number.isInteger(value) ? 0 : 2 }
      : { minimumFractionDigits: digits, maximumFractionDigits: digits };
  return value.toLocaleString("en-US", options);
}

// Sizes in bytes, durations in ms and ISO times, which several views show.
export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${fmt(value, unit ? 1 : 0)} ${units[unit]}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms >= 1000 ? `${fmt(ms / 1000, 2)} s` : `${fmt(ms, ms < 10 ? 1 : 0)} ms`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const date = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
}
