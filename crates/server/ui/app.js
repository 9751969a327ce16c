// sealtrail's web UI: the event list with filters and a histogram, and each event's detail.
// Plain JavaScript served by the binary (no build step, nothing fetched from elsewhere). The
// credential lives in sessionStorage only: it is gone when the tab closes.
"use strict";

const $ = (id) => document.getElementById(id);
const FILTERS = ["q", "actor_id", "action", "target_type", "target_id", "outcome", "category"];
const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const PAGE = 50;

let cursor = null;
let selected = null;

function credential() {
  return {
    token: sessionStorage.getItem("sealtrail.token"),
    tenant: sessionStorage.getItem("sealtrail.tenant") || "",
  };
}

/** Sends a request with the credential; answers the response. */
async function send(path, params) {
  const { token, tenant } = credential();
  const query = new URLSearchParams(params || []);
  if (tenant) query.set("tenant", tenant);
  const url = query.toString() ? `${path}?${query}` : path;
  return fetch(url, { headers: { Authorization: `Bearer ${token}` } });
}

/** Calls the API; answers the parsed body, or throws an Error carrying the problem. */
async function api(path, params) {
  const response = await send(path, params);
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    signOut("The credential was refused: sign in again.");
    throw new Error("signed out");
  }
  if (!response.ok) {
    const fields = (body && body.errors || []).map((e) => `${e.field}: ${e.message}`);
    const error = new Error([body && body.detail || response.statusText, ...fields].join(" — "));
    error.status = response.status;
    throw error;
  }
  return body;
}

function signOut(message) {
  sessionStorage.removeItem("sealtrail.token");
  sessionStorage.removeItem("sealtrail.tenant");
  $("signin-error").textContent = message || "";
  show();
}

function show() {
  const { token, tenant } = credential();
  $("signin").hidden = Boolean(token);
  $("app").hidden = !token;
  $("signout").hidden = !token;
  $("who").textContent = token ? (tenant ? `tenant ${tenant}` : "signed in") : "";
  if (token) {
    fromUrl();
    refresh();
  } else {
    $("token").focus();
  }
}

/** The form's filters, as the URL keeps them. */
function readForm() {
  const form = new FormData($("filters"));
  const state = {};
  for (const name of [...FILTERS, "range", "from", "to", "order", "view"]) {
    const value = (form.get(name) || "").toString().trim();
    if (value) state[name] = value;
  }
  if (state.range !== "custom") {
    delete state.from;
    delete state.to;
  }
  return state;
}

function fromUrl() {
  const params = new URLSearchParams(location.search);
  const form = $("filters");
  for (const name of [...FILTERS, "from", "to"]) form.elements[name].value = params.get(name) || "";
  form.elements.range.value = params.get("range") || "24h";
  form.elements.order.value = params.get("order") || "desc";
  form.elements.view.value = params.get("view") || "";
  form.classList.toggle("custom-range", form.elements.range.value === "custom");
}

/** The window `[from, to)` as RFC 3339, or nothing for all time. */
function windowOf(state) {
  if (state.range === "custom") {
    const utc = (v) => (v ? new Date(`${v}Z`).toISOString() : undefined);
    return { from: utc(state.from), to: utc(state.to) };
  }
  const span = RANGES[state.range || "24h"];
  if (!span) return {};
  const now = Date.now();
  return { from: new Date(now - span).toISOString(), to: new Date(now).toISOString() };
}

function listParams(state) {
  const params = [];
  for (const name of FILTERS) if (state[name]) params.push([name, state[name]]);
  const { from, to } = windowOf(state);
  if (from) params.push(["from", from]);
  if (to) params.push(["to", to]);
  params.push(["order", state.order || "desc"], ["limit", String(PAGE)]);
  return params;
}

/** Whether the state shows one record's timeline rather than the list. */
function timeline(state) {
  return state.view === "timeline" && state.target_type && state.target_id;
}

function refresh() {
  const state = readForm();
  if (state.view && !timeline(state)) {
    delete state.view;
    $("filters").elements.view.value = "";
  }
  history.replaceState(null, "", `?${new URLSearchParams(state)}`);
  cursor = null;
  $("events").tBodies[0].replaceChildren();
  closeDetail();
  const record = state.target_type && state.target_id;
  $("timeline-toggle").hidden = !record;
  $("timeline-toggle").textContent = timeline(state) ? "Show the list" : "Show the timeline of this record";
  $("events").classList.toggle("timeline", Boolean(timeline(state)));
  $("timeline-note").hidden = !timeline(state);
  $("timeline-note").textContent = timeline(state)
    ? `The timeline of ${state.target_type} ${state.target_id}: events targeting it and events naming it in related, oldest first.`
    : "";
  loadPage(state);
  histogram(state);
  checkpoint();
}

async function loadPage(state) {
  $("error").textContent = "";
  let path = "/api/v1/audit-logs";
  let params = listParams(state);
  if (timeline(state)) {
    path = `/api/v1/entities/${encodeURIComponent(state.target_type)}/${encodeURIComponent(state.target_id)}/history`;
    params = [["limit", String(PAGE)]];
  }
  if (cursor) params.push(["cursor", cursor]);
  try {
    const page = await api(path, params);
    const body = $("events").tBodies[0];
    for (const event of page.items) body.append(row(event));
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    $("empty").hidden = body.rows.length > 0;
  } catch (error) {
    $("error").textContent = error.message;
  }
}

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function cell(content, className) {
  const td = document.createElement("td");
  td.textContent = text(content);
  if (className) td.className = className;
  return td;
}

function row(event) {
  const tr = document.createElement("tr");
  tr.tabIndex = 0;
  tr.dataset.id = event.id;
  tr.setAttribute("aria-selected", "false");
  const target = event.target ? `${event.target.type} ${event.target.id}` : "";
  tr.append(
    cell(event.occurred_at.replace("T", " ").replace("Z", "")),
    cell(event.action),
    cell(event.actor.name ? `${event.actor.name} (${event.actor.id})` : event.actor.id),
    cell(target),
    cell(event.outcome, event.outcome),
    cell(event.relation, "relation"),
  );
  const open = () => openDetail(event, tr);
  tr.addEventListener("click", open);
  tr.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      open();
    }
  });
  return tr;
}

async function histogram(state) {
  const box = $("histogram");
  box.replaceChildren();
  $("histogram-total").textContent = "";
  let { from, to } = windowOf(state);
  to = to || new Date().toISOString();
  from = from || new Date(Date.parse(to) - RANGES["30d"]).toISOString();
  const span = Date.parse(to) - Date.parse(from);
  const bucket = span <= 2 * 86400e3 ? "hour" : "day";
  let stats;
  try {
    stats = await api("/api/v1/audit-logs/statistics", [["from", from], ["to", to], ["bucket", bucket], ["top", "5"]]);
  } catch (error) {
    // A viewer token reads no statistics: the list alone is shown.
    $("overview").hidden = error.status === 403;
    return;
  }
  $("overview").hidden = false;
  const top = (id, entries, label, filters) => {
    const list = $(id);
    list.replaceChildren();
    for (const entry of entries) {
      const item = document.createElement("li");
      item.append(filterLink(label(entry), { ...filters(entry), range: state.range || "24h" }), ` ${entry.count}`);
      list.append(item);
    }
  };
  top("top-actors", stats.top_actors, (e) => e.id, (e) => ({ actor_id: e.id }));
  top("top-actions", stats.top_actions, (e) => e.action, (e) => ({ action: e.action }));
  top("top-targets", stats.top_targets, (e) => `${e.type} ${e.id}`, (e) => ({ target_type: e.type, target_id: e.id }));
  $("histogram-total").textContent = `— ${stats.total} events, ${stats.failures} failures (all of the tenant's, per ${bucket})`;
  const most = Math.max(1, ...stats.buckets.map((b) => b.count));
  const length = bucket === "hour" ? 3600e3 : 86400e3;
  for (const b of stats.buckets) {
    const link = document.createElement("a");
    const start = new Date(b.start);
    const end = new Date(Math.min(start.getTime() + length, Date.parse(to)));
    const local = (d) => d.toISOString().slice(0, 19);
    link.href = `?${new URLSearchParams({ ...state, range: "custom", from: local(start), to: local(end) })}`;
    link.style.height = `${(100 * b.count) / most}%`;
    link.setAttribute("role", "listitem");
    link.setAttribute("aria-label", `${b.start}: ${b.count} events, ${b.failures} failures`);
    link.title = `${b.start}: ${b.count} events, ${b.failures} failures`;
    if (b.failures > 0 && b.failures * 2 >= b.count) link.className = "failures";
    box.append(link);
  }
}

/** The tenant's latest signed checkpoint, as a short summary. */
async function checkpoint() {
  const list = $("checkpoint");
  list.replaceChildren();
  try {
    const c = await api("/api/v1/integrity/checkpoint");
    pair(list, "size", c.size);
    pair(list, "root", `${c.root_hash.slice(0, 16)}…`);
    pair(list, "issued", c.issued_at);
    pair(list, "key", c.key_id);
  } catch (error) {
    pair(list, "", error.status === 404 ? "none yet" : "not readable with this credential");
  }
}

/** Downloads the current list as an export of `format`. */
async function download(format) {
  $("error").textContent = "";
  const state = readForm();
  const params = listParams(state).filter(([name]) => name !== "limit");
  params.push(["format", format]);
  const response = await send("/api/v1/audit-logs/export", params);
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    $("error").textContent = `Export refused: ${body && body.detail || response.statusText}`;
    return;
  }
  const disposition = response.headers.get("content-disposition") || "";
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = named ? named[1] : `sealtrail-export.${format}`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function pair(list, term, value, className) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  if (value instanceof Node) dd.append(value);
  else dd.textContent = text(value);
  if (className) dd.className = className;
  list.append(dt, dd);
}

/** A link that shows the list filtered by `filters`. */
function filterLink(label, filters) {
  const link = document.createElement("a");
  link.textContent = label;
  link.href = `?${new URLSearchParams({ range: "all", ...filters })}`;
  return link;
}

function value(v) {
  if (v === null || v === undefined) return { text: "—", redacted: false };
  const shown = typeof v === "string" ? v : JSON.stringify(v);
  return { text: shown, redacted: v === "[REDACTED]" };
}

/** Checks in the browser that the event is what was sealed, and shows each step. */
async function seal(event) {
  const mark = $("seal");
  const steps = $("seal-steps");
  mark.className = "seal";
  mark.textContent = "Checking the seal…";
  steps.replaceChildren();
  const shown = event.id;
  try {
    const checkpoint = await api("/api/v1/integrity/checkpoint");
    if (event.seq > checkpoint.size) {
      mark.textContent = "Newer than the latest checkpoint: it is sealed under the next one.";
      return;
    }
    const [raw, proof, keys] = await Promise.all([
      send(`/api/v1/audit-logs/${event.id}`).then((r) => r.text()),
      api(`/api/v1/integrity/proof/${event.id}`, [["size", String(checkpoint.size)]]),
      api("/api/v1/integrity/public-keys"),
    ]);
    const result = await SealtrailVerify.verifyEvent(raw, proof, checkpoint, keys);
    if (selected?.dataset.id !== shown) return;
    mark.className = `seal ${result.ok ? "verified" : "failed"}`;
    mark.textContent = result.ok
      ? `✓ Verified: sealed at position ${event.seq} of the log signed at size ${checkpoint.size} (${checkpoint.key_id}).`
      : "✗ Verification failed: what is shown is not what was sealed.";
    for (const s of result.steps) {
      const item = document.createElement("li");
      item.textContent = `${s.ok ? "✓" : "✗"} ${s.what}`;
      steps.append(item);
    }
  } catch (error) {
    mark.textContent = error.status === 403
      ? "This credential does not read proofs."
      : error.status === 404
        ? "No checkpoint yet: the seal can be checked once one is signed."
        : `The seal could not be checked: ${error.message}`;
  }
}

function openDetail(event, tr) {
  if (selected) selected.setAttribute("aria-selected", "false");
  selected = tr;
  tr.setAttribute("aria-selected", "true");
  const list = $("detail-fields");
  list.replaceChildren();
  pair(list, "id", event.id);
  pair(list, "seq", event.seq);
  pair(list, "occurred", event.occurred_at);
  pair(list, "recorded", event.recorded_at);
  pair(list, "action", filterLink(event.action, { action: event.action }));
  pair(list, "category", event.category);
  pair(list, "event type", event.event_type);
  pair(list, "outcome", event.outcome, event.outcome);
  pair(list, "error", event.error);
  const actor = event.actor;
  pair(list, "actor", filterLink(`${actor.id} (${actor.type})`, { actor_id: actor.id }));
  pair(list, "actor name", actor.name);
  pair(list, "actor e-mail", actor.email);
  if (event.target) {
    const t = event.target;
    pair(list, "target", filterLink(`${t.type} ${t.id}`, { target_type: t.type, target_id: t.id }));
    pair(list, "target name", t.name);
  }
  if (event.organization) pair(list, "organization", `${event.organization.id} ${text(event.organization.name)}`);
  const context = event.context || {};
  for (const key of ["ip", "user_agent", "method", "endpoint", "status_code", "duration_ms", "session_id"]) {
    pair(list, key.replace("_", " "), context[key]);
  }
  if (context.correlation_id) {
    pair(list, "correlation", filterLink(context.correlation_id, { correlation_id: context.correlation_id }));
  }
  for (const r of event.related || []) {
    pair(list, "related", filterLink(`${r.type} ${r.id}`, { target_type: r.type, target_id: r.id }));
  }
  const changes = $("changes").tBodies[0];
  changes.replaceChildren();
  for (const change of event.changes || []) {
    const tr = document.createElement("tr");
    const before = value(change.old_value);
    const after = value(change.new_value);
    tr.append(
      cell(change.field),
      cell(before.text, before.redacted ? "redacted" : ""),
      cell(after.text, after.redacted ? "redacted" : ""),
    );
    changes.append(tr);
  }
  $("changes").hidden = changes.rows.length === 0;
  $("raw").textContent = JSON.stringify(event, null, 2);
  $("detail").hidden = false;
  $("detail").focus();
  seal(event);
}

function closeDetail() {
  $("detail").hidden = true;
  if (selected) {
    selected.setAttribute("aria-selected", "false");
    selected.focus();
  }
  selected = null;
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem("sealtrail.token", $("token").value.trim());
    sessionStorage.setItem("sealtrail.tenant", $("signin-tenant").value.trim());
    $("token").value = "";
    $("signin-error").textContent = "";
    show();
  });
  $("signout").addEventListener("click", () => signOut(""));
  $("filters").addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $("filters").elements.range.addEventListener("change", (e) => {
    $("filters").classList.toggle("custom-range", e.target.value === "custom");
  });
  $("more").addEventListener("click", () => loadPage(readForm()));
  for (const button of document.querySelectorAll("[data-export]")) {
    button.addEventListener("click", () => download(button.dataset.export));
  }
  $("timeline-toggle").addEventListener("click", () => {
    const form = $("filters");
    form.elements.view.value = form.elements.view.value === "timeline" ? "" : "timeline";
    refresh();
  });
  $("close-detail").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("detail").hidden) closeDetail();
  });
  show();
});
