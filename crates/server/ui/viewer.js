// The embeddable viewer (SPEC §10): a host app links to or frames `/viewer#token=stv_…` with a
// viewer token it minted; the page shows that token's scope as a timeline, oldest first. The
// token travels in the fragment (never sent to a server, never in a log) and is kept for the
// tab only; every read is recorded by sealtrail as `audit.viewed`.
"use strict";

const $ = (id) => document.getElementById(id);
let cursor = null;

function token() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("sealtrail.viewer", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("sealtrail.viewer");
}

/** What the token says it shows (its claims are readable; the server checks them). */
function scopeOf(value) {
  try {
    const claims = value.slice(4).split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    const scope = JSON.parse(atob(claims)).scope;
    if (scope.target) return `${scope.target.type} ${scope.target.id}`;
    if (scope.actor_id) return `actor ${scope.actor_id}`;
    if (scope.organization_id) return `organization ${scope.organization_id}`;
  } catch {
    // not a viewer token: the server will say so
  }
  return "";
}

function item(event) {
  const li = document.createElement("li");
  const head = document.createElement("div");
  const when = document.createElement("time");
  when.dateTime = event.occurred_at;
  when.textContent = event.occurred_at.replace("T", " ").replace(/\.\d+Z$/, " UTC");
  const what = document.createElement("strong");
  what.textContent = ` ${event.action}`;
  const who = document.createElement("span");
  who.className = "muted";
  who.textContent = ` by ${event.actor.name || event.actor.id}`;
  head.append(when, what, who);
  if (event.outcome === "failure") {
    const failed = document.createElement("span");
    failed.className = "failure";
    failed.textContent = ` failed${event.error ? `: ${event.error}` : ""}`;
    head.append(failed);
  }
  li.append(head);
  if (event.changes.length) {
    const list = document.createElement("ul");
    for (const change of event.changes) {
      const c = document.createElement("li");
      const shown = (v) => (v === null ? "—" : typeof v === "string" ? v : JSON.stringify(v));
      c.textContent = `${change.field}: ${shown(change.old_value)} → ${shown(change.new_value)}`;
      list.append(c);
    }
    li.append(list);
  }
  return li;
}

async function load() {
  const value = token();
  if (!value) {
    $("error").textContent = "This page needs a viewer token: open it as /viewer#token=….";
    return;
  }
  const scope = scopeOf(value);
  $("title").textContent = scope ? `Activity of ${scope}` : "Activity";
  const query = new URLSearchParams({ order: "asc", limit: "50" });
  if (cursor) query.set("cursor", cursor);
  const response = await fetch(`/api/v1/audit-logs?${query}`, {
    headers: { Authorization: `Bearer ${value}` },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    $("error").textContent = response.status === 401
      ? "This link has expired or is not valid: ask for a new one."
      : (body && body.detail) || response.statusText;
    return;
  }
  for (const event of body.items) $("timeline").append(item(event));
  cursor = body.next_cursor;
  $("more").hidden = !cursor;
  $("empty").hidden = $("timeline").children.length > 0;
}

document.addEventListener("DOMContentLoaded", () => {
  $("more").addEventListener("click", load);
  load();
});
