// The shell: sidebar navigation, hash routing (#/overview, #/models, #/jobs, #/keys,
// #/playground) and the key prompt.
//
// A view is a module ./views/<name>.js exporting `async function render(root, ctx)`; it may
// return a cleanup function, called when the user leaves the view (close streams, stop
// timers). ctx holds:
//   session   {auth, name, scope}: whether keys are on, and the key's owner and scope
//   can(s)    whether the key's scope covers s ("read" | "inference" | "manage" | "admin")
//   params    URLSearchParams of the hash's query (#/models?model=x)
//   toast(message, kind)   a short notice; kind "error" | "ok" | "info"
//   setLive(on)            the "live" badge in the top bar (a stream is connected)
//   rerender()             render the current view again

import { ApiError, esc, getKey, setKey } from "./api.js";

const VIEWS = {
  overview: "Overview",
  models: "Models",
  jobs: "Jobs",
  keys: "Keys & audit",
  playground: "Playground",
};
const SCOPES = ["read", "inference", "manage", "admin"];

const root = document.getElementById("view");
const dialog = document.getElementById("key-dialog");
let session = { auth: false, name: null, scope: "admin" };
let cleanup = null;
let generation = 0; // a render that finishes after the user moved on must not take over

function current() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [name, query = ""] = hash.split("?");
  return { name: VIEWS[name] ? name : "overview", params: new URLSearchParams(query) };
}

export function toast(message, kind = "info") {
  const el = document.createElement("div");
  el.className = `toast toast-${kind}`;
  el.textContent = message;
  document.getElementById("toasts").appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

function setLive(on) {
  document.getElementById("live").hidden = !on;
}

async function loadSession() {
  // Open route, always 200: asking it costs no console error when the key is missing.
  const response = await fetch("/dashboard/session", {
    headers: getKey() ? { Authorization: `Bearer ${getKey()}` } : {},
  });
  session = await response.json();
  const who = document.getElementById("who");
  if (!session.auth) who.textContent = "keys off";
  else if (session.name) who.textContent = `${session.name} · ${session.scope}`;
  else who.textContent = "no key";
  return session;
}

function promptForKey(message) {
  document.getElementById("key-error").textContent = message || "";
  const input = document.getElementById("key-input");
  input.value = "";
  if (!dialog.open) dialog.showModal();
  input.focus();
}

async function route() {
  const mine = ++generation;
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.warn("view cleanup failed", error);
    }
    cleanup = null;
  }
  setLive(false);
  const { name, params } = current();
  document.getElementById("title").textContent = VIEWS[name];
  document.title = `${VIEWS[name]} · neurons`;
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", a.dataset.view === name);
  }
  root.replaceChildren();
  root.dataset.view = name;
  root.dataset.state = "loading";
  try {
    await loadSession();
  } catch (error) {
    if (mine !== generation) return;
    root.innerHTML = `<div class="card error-card"><h3>The control plane did not answer</h3>
      <p>${esc(String(error))}</p><button class="btn" type="button" id="retry">Retry</button></div>`;
    root.querySelector("#retry").addEventListener("click", route);
    root.dataset.state = "error";
    return;
  }
  if (mine !== generation) return;
  if (session.auth && !session.name) {
    // Keys are on and this browser has no valid one: ask before any call is refused.
    root.innerHTML = `<div class="card empty">This control plane needs an API key.
      <button class="btn btn-primary" type="button" id="ask-key">Enter key</button></div>`;
    root.querySelector("#ask-key").addEventListener("click", () => promptForKey());
    root.dataset.state = "locked";
    promptForKey(getKey() ? session.error : "");
    return;
  }
  const ctx = {
    session,
    can: (scope) => SCOPES.indexOf(session.scope) >= SCOPES.indexOf(scope),
    params,
    toast,
    setLive,
    rerender: route,
  };
  try {
    const module = await import(`./views/${name}.js`);
    if (mine !== generation) return;
    const done = await module.render(root, ctx);
    if (mine !== generation) {
      if (typeof done === "function") done();
      return;
    }
    cleanup = typeof done === "function" ? done : null;
    root.dataset.state = "ready";
  } catch (error) {
    if (mine !== generation) return;
    const message = error instanceof ApiError ? error.message : String(error);
    root.innerHTML = `<div class="card error-card"><h3>${esc(VIEWS[name])} could not load</h3>
      <p>${esc(message)}</p></div>`;
    root.dataset.state = "error";
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("key-input").value.trim();
  if (!key) return;
  dialog.close();
  setKey(key);
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  dialog.close();
  setKey("");
  route();
});
document.getElementById("key-button").addEventListener("click", () => promptForKey());
window.addEventListener("neurons:unauthorized", (event) => promptForKey(event.detail.message));
window.addEventListener("hashchange", route);

if (!location.hash) history.replaceState(null, "", "#/overview");
route();
