// sealtrail's web UI: the event list with filters and a histogram, and each event's detail.
// Plain JavaScript served by the binary (no build step, nothing fetched from elsewhere). The
// credential lives in sessionStorage only: it is gone when the tab closes.
"use strict";

const $ = (id) => document.getElementById(id);
const FILTERS = ["q", "actor_id", "action", "target_type", "target_id", "outcome", "category"];
const RANGES = { "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const PAGE = 50;
/** How many of the list's newest events "Verify this log" checks one by one. */
const VERIFY_EVENTS = 20;

let cursor = null;
let selected = null;
let lastDay = null;

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
  for (const name of [...FILTERS, "range", "from", "to", "order", "bucket", "view"]) {
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
  form.elements.bucket.value = params.get("bucket") || "";
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

/** Whether the state shows one actor's activity rather than the list. */
function activity(state) {
  return state.view === "activity" && state.actor_id;
}

/** The view the state names, where it can be shown: list, timeline, activity, stats, verify. */
function viewOf(state) {
  if (timeline(state)) return "timeline";
  if (activity(state)) return "activity";
  if (state.view === "stats" || state.view === "verify") return state.view;
  return "list";
}

function refresh() {
  const state = readForm();
  const view = viewOf(state);
  if (view === "list") delete state.view;
  $("filters").elements.view.value = state.view || "";
  history.replaceState(null, "", `?${new URLSearchParams(state)}`);
  cursor = null;
  lastDay = null;
  $("events").tBodies[0].replaceChildren();
  closeDetail();
  for (const [id, name] of [["nav-events", "list"], ["nav-stats", "stats"], ["nav-verify", "verify"]]) {
    const { view: _, ...kept } = state;
    $(id).href = `?${new URLSearchParams(name === "list" ? kept : { ...kept, view: name })}`;
    if (name === view) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  const listed = !["stats", "verify"].includes(view);
  $("list-area").hidden = !listed;
  // The charts count the whole tenant: beside one actor's activity they would mislead.
  $("overview").hidden = view === "verify" || view === "activity";
  $("overview").classList.toggle("full", view === "stats");
  $("failures-chart").hidden = view !== "stats";
  $("verify-panel").hidden = view !== "verify";
  const record = state.target_type && state.target_id;
  $("timeline-toggle").hidden = !record || view === "activity" || !listed;
  $("timeline-toggle").textContent = view === "timeline" ? "Show the list" : "Show the timeline of this record";
  $("activity-toggle").hidden = !state.actor_id || view === "timeline" || !listed;
  $("activity-toggle").textContent = view === "activity" ? "Show the list" : "Show this actor's activity";
  $("events").classList.toggle("timeline", view === "timeline");
  const note = {
    timeline: `The timeline of ${state.target_type} ${state.target_id}: events targeting it and events naming it in related, oldest first.`,
    activity: `The activity of ${state.actor_id}: what this actor did in the range, by day, with every other filter kept.`,
  }[view];
  $("timeline-note").hidden = !note;
  $("timeline-note").textContent = note || "";
  $("list-title").textContent = { timeline: "Timeline", activity: "Activity" }[view] || "Events";
  if (listed) loadPage(state);
  if (!$("overview").hidden) histogram(state, view === "stats" ? 10 : 5);
  checkpoint();
  if (view === "verify") verifyLog(state);
}

async function loadPage(state) {
  $("error").textContent = "";
  let path = "/api/v1/audit-logs";
  let params = listParams(state);
  if (timeline(state)) {
    path = `/api/v1/entities/${encodeURIComponent(state.target_type)}/${encodeURIComponent(state.target_id)}/history`;
    params = [["limit", String(PAGE)]];
  } else if (activity(state)) {
    path = `/api/v1/audit-logs/user/${encodeURIComponent(state.actor_id)}`;
    params = params.filter(([name]) => name !== "actor_id");
  }
  if (cursor) params.push(["cursor", cursor]);
  try {
    const page = await api(path, params);
    const body = $("events").tBodies[0];
    for (const event of page.items) {
      if (activity(state)) {
        const day = event.occurred_at.slice(0, 10);
        if (day !== lastDay) body.append(dayRow(day));
        lastDay = day;
      }
      body.append(row(event));
    }
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

/** A heading row naming a day, between an actor's events of different days. */
function dayRow(day) {
  const tr = document.createElement("tr");
  tr.className = "day";
  const th = document.createElement("th");
  th.scope = "colgroup";
  th.colSpan = 6;
  th.textContent = new Date(`${day}T00:00:00Z`).toLocaleDateString("en-GB", {
    weekday: "long", year: "numeric", month: "long", day: "numeric", timeZone: "UTC",
  });
  tr.append(th);
  return tr;
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

/** The statistics of the range: events and failures per bucket and the top lists, as charts. */
async function histogram(state, top) {
  const box = $("histogram");
  box.replaceChildren();
  $("failures").replaceChildren();
  $("histogram-total").textContent = "";
  let { from, to } = windowOf(state);
  to = to || new Date().toISOString();
  from = from || new Date(Date.parse(to) - RANGES["30d"]).toISOString();
  const span = Date.parse(to) - Date.parse(from);
  const bucket = state.bucket || (span <= 2 * 86400e3 ? "hour" : "day");
  let stats;
  try {
    stats = await api("/api/v1/audit-logs/statistics", [["from", from], ["to", to], ["bucket", bucket], ["top", String(top)]]);
  } catch (error) {
    // A viewer token reads no statistics: the list alone is shown.
    if (error.status === 403) $("overview").hidden = true;
    else $("histogram-total").textContent = `— ${error.message}`;
    return;
  }
  for (const name of document.querySelectorAll(".bucket-name")) name.textContent = bucket;
  const bars = (id, entries, label, filters) => {
    const list = $(id);
    list.replaceChildren();
    const most = Math.max(1, ...entries.map((e) => e.count));
    for (const entry of entries) {
      const item = document.createElement("li");
      const link = filterLink(label(entry), { ...filters(entry), range: state.range || "24h" });
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = ` ${entry.count}`;
      item.append(link, count);
      item.style.setProperty("--share", `${(100 * entry.count) / most}%`);
      list.append(item);
    }
  };
  bars("top-actors", stats.top_actors, (e) => e.id, (e) => ({ actor_id: e.id }));
  bars("top-actions", stats.top_actions, (e) => e.action, (e) => ({ action: e.action }));
  bars("top-targets", stats.top_targets, (e) => `${e.type} ${e.id}`, (e) => ({ target_type: e.type, target_id: e.id }));
  $("histogram-total").textContent = `— ${stats.total} events, ${stats.failures} failures (all of the tenant's)`;
  const length = bucket === "hour" ? 3600e3 : 86400e3;
  const local = (d) => d.toISOString().slice(0, 19);
  const chart = (target, value, withFailures, extra) => {
    const most = Math.max(1, ...stats.buckets.map(value));
    for (const b of stats.buckets) {
      const start = new Date(b.start);
      const end = new Date(Math.min(start.getTime() + length, Date.parse(to)));
      const link = document.createElement("a");
      link.href = `?${new URLSearchParams({ ...state, view: "", range: "custom", from: local(start), to: local(end), ...extra })}`;
      link.setAttribute("role", "listitem");
      const label = `${b.start}: ${b.count} events, ${b.failures} failures`;
      link.setAttribute("aria-label", label);
      link.title = label;
      const ok = document.createElement("span");
      ok.className = withFailures ? "ok-part" : "fail-part";
      ok.style.height = `${(100 * (value(b) - (withFailures ? b.failures : 0))) / most}%`;
      link.append(ok);
      if (withFailures && b.failures > 0) {
        const failed = document.createElement("span");
        failed.className = "fail-part";
        failed.style.height = `${(100 * b.failures) / most}%`;
        link.append(failed);
      }
      target.append(link);
    }
  };
  chart(box, (b) => b.count, true, {});
  if (!$("failures-chart").hidden) chart($("failures"), (b) => b.failures, false, { outcome: "failure" });
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
    const keys = await api("/api/v1/integrity/public-keys");
    const result = await sealOf(event, checkpoint, keys);
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

/** Where this browser keeps the checkpoint it last verified for a tenant (not a secret). */
const seenKey = (tenant) => `sealtrail.seen.${tenant}`;

/**
 * Verifies the log in the browser: the latest checkpoint's signature; its consistency with the
 * checkpoint this browser verified before (so nothing sealed then was altered or removed since);
 * the seal of each of the newest events the list shows. Remembers the checkpoint when all hold.
 */
async function verifyLog(state) {
  const result = $("verify-result");
  const steps = $("verify-steps");
  result.className = "seal";
  result.textContent = "Verifying…";
  steps.replaceChildren();
  const say = (ok, what) => {
    const item = document.createElement("li");
    item.textContent = `${ok ? "✓" : "✗"} ${what}`;
    item.className = ok ? "" : "failure";
    steps.append(item);
    return ok;
  };
  const fail = (why) => {
    result.className = "seal failed";
    result.textContent = `✗ ${why}`;
  };
  let checkpoint;
  let keys;
  try {
    [checkpoint, keys] = await Promise.all([api("/api/v1/integrity/checkpoint"), api("/api/v1/integrity/public-keys")]);
  } catch (error) {
    result.textContent = error.status === 404
      ? "No checkpoint yet: the log can be verified once one is signed."
      : error.status === 403
        ? "This credential does not read proofs."
        : `The log could not be verified: ${error.message}`;
    return;
  }
  const key = keys.keys.find((k) => k.key_id === checkpoint.key_id);
  $("verify-command").textContent =
    `sealtrail verify --export sealtrail-${checkpoint.tenant}-*.ndjson --public-key ${key ? key.public_key : "<the key from /api/v1/integrity/public-keys>"}`;
  const signed = await SealtrailVerify.verifyCheckpoint(checkpoint, keys);
  for (const s of signed.steps) say(s.ok, `checkpoint of ${checkpoint.size} events: ${s.what}`);
  if (!signed.ok) return fail("The latest checkpoint is not signed by a published key.");

  let seen = null;
  try {
    seen = JSON.parse(localStorage.getItem(seenKey(checkpoint.tenant)) || "null");
  } catch {
    seen = null;
  }
  if (seen && Number.isSafeInteger(seen.size) && seen.size > 0) {
    let consistent = false;
    if (seen.size <= checkpoint.size) {
      try {
        const proof = await api("/api/v1/integrity/consistency", [["from", String(seen.size)], ["to", String(checkpoint.size)]]);
        consistent = await SealtrailVerify.verifyConsistency(seen.size, checkpoint.size, seen.root_hash, checkpoint.root_hash, proof.proof);
      } catch {
        consistent = false;
      }
    }
    if (!say(consistent, `the ${seen.size} events of the checkpoint seen on ${seen.issued_at} are still in the log, unchanged (consistency proof)`)) {
      return fail(`The log is not the one this browser verified on ${seen.issued_at}: events sealed then were altered or removed.`);
    }
  } else {
    say(true, "no earlier checkpoint seen in this browser: this one is remembered, and the next visit proves the log only grew");
  }

  const params = listParams(state).filter(([name]) => name !== "limit" && name !== "order");
  params.push(["order", "desc"], ["limit", String(VERIFY_EVENTS)]);
  let events = [];
  try {
    events = (await api("/api/v1/audit-logs", params)).items.filter((e) => e.seq <= checkpoint.size);
  } catch (error) {
    say(false, `the events could not be listed: ${error.message}`);
    return fail("The events could not be checked.");
  }
  const checked = await Promise.all(events.map((event) => sealOf(event, checkpoint, keys)));
  const bad = events.filter((_, i) => !checked[i].ok);
  say(bad.length === 0, `${events.length - bad.length} of the ${events.length} newest events of the list (as filtered) hash to their sealed leaves under this checkpoint`);
  for (const event of bad) say(false, `event ${event.id} (seq ${event.seq}) is not what was sealed`);
  if (bad.length > 0) return fail(`${bad.length} event(s) shown are not what was sealed.`);

  if (!seen || seen.size <= checkpoint.size) {
    localStorage.setItem(seenKey(checkpoint.tenant), JSON.stringify({
      size: checkpoint.size, root_hash: checkpoint.root_hash, issued_at: checkpoint.issued_at,
    }));
  }
  result.className = "seal verified";
  result.textContent = `✓ Verified: the log of ${checkpoint.size} events signed at ${checkpoint.issued_at} (${checkpoint.key_id}).`;
}

/** Checks one event's seal under `checkpoint`, fetching its exact text and its proof. */
async function sealOf(event, checkpoint, keys) {
  const [raw, proof] = await Promise.all([
    send(`/api/v1/audit-logs/${event.id}`).then((r) => r.text()),
    api(`/api/v1/integrity/proof/${event.id}`, [["size", String(checkpoint.size)]]),
  ]);
  return SealtrailVerify.verifyEvent(raw, proof, checkpoint, keys);
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
  pair(list, "activity", filterLink(`everything ${actor.id} did`, { actor_id: actor.id, view: "activity", range: "30d" }));
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
  $("activity-toggle").addEventListener("click", () => {
    const form = $("filters");
    form.elements.view.value = form.elements.view.value === "activity" ? "" : "activity";
    refresh();
  });
  $("verify-run").addEventListener("click", () => verifyLog(readForm()));
  $("close-detail").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !$("detail").hidden) closeDetail();
  });
  show();
});
