// End-to-end tests of the web UI in headless Chromium: a real sealtrail server on a random
// port over a fresh embedded store, real events, the page driven as a reader would.
// Run: SEALTRAIL_BIN=target/debug/sealtrail node --test crates/server/ui/tests/ui.test.mjs
// Screenshots go to $SEALTRAIL_UI_ARTIFACTS (default target/ui-screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import net from "node:net";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const ADMIN = "st_uitestadminuitestadminuitestadminuitest00";
const bin = process.env.SEALTRAIL_BIN || "target/debug/sealtrail";
const artifacts = process.env.SEALTRAIL_UI_ARTIFACTS || "target/ui-screenshots";
mkdirSync(artifacts, { recursive: true });

let server, base, dataDir, browser, key, viewer;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

async function call(method, path, token, body) {
  const response = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "content-type": "application/json" },
    // Numbers JavaScript cannot hold are written in by name (`"__u64max__"`).
    body: body === undefined
      ? undefined
      : JSON.stringify(body)
          .replace('"__u64max__"', "18446744073709551615")
          .replace('"__below_i64__"', "-9223372036854775809")
          .replace('"__tiny__"', "1e-300"),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "sealtrail-ui-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const args = [
    "serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir, "--checkpoint-every-events", "1",
    "--cors-origin", "acme=http://localhost:9",
  ];
  server = spawn(bin, args, {
    env: { ...process.env, SEALTRAIL_ADMIN_TOKEN: ADMIN, SEALTRAIL_LOG: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  key = (await call("POST", "/api/v1/keys", ADMIN, { tenant: "acme", scopes: ["ingest", "read"], name: "ui" })).token;
  const events = [];
  for (let i = 0; i < 60; i++) {
    events.push({ action: "asset.viewed", actor: { id: `u${i % 3}` }, target: { type: "asset", id: `a${i % 5}` } });
  }
  events.push({
    action: "asset.updated",
    category: "update",
    actor: { id: "u-42", name: "Ada Lovelace" },
    target: { type: "asset", id: "a-1", name: "Laptop" },
    outcome: "failure",
    error: "locked",
    before: { status: "in_stock", password: "old" },
    after: { status: "assigned", password: "new" },
    related: [{ type: "user", id: "u-7" }],
    context: {
      ip: "10.0.0.1", correlation_id: "req-1", user_agent: "Mozilla/5.0", method: "PATCH",
      status_code: 409, duration_ms: 3.25, endpoint: "/assets/{id}", session_id: "s-1",
    },
    organization: { id: "org-1", name: "Example Org" },
    metadata: { amount: 12.5, big: "__u64max__", below: "__below_i64__", tiny: "__tiny__", n: -3, whole: 7, nested: { z: 1, a: [true, null, "é✓"], "Ä": {} } },
  });
  events.push({
    action: "loan.created",
    actor: { id: "u-7", email: "u7@example.com" },
    target: { type: "user", id: "u-9", name: "Bo Person" },
    related: [{ type: "asset", id: "a-1" }],
  });
  await call("POST", "/api/v1/events", key, events);
  // Wait for the checkpoint covering all 63 events (62 and the key's creation).
  for (let i = 0; i < 600; i++) {
    const response = await fetch(`${base}/api/v1/integrity/checkpoint`, { headers: { Authorization: `Bearer ${key}` } });
    if (response.ok && (await response.json()).size === 63) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  viewer = (await call("POST", "/api/v1/viewer-tokens", key, { scope: { actor_id: "u-42" } })).token;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || execFileSync("sh", ["-c", "command -v chromium"]).toString().trim(),
    // The host pages of the framing test are served by the test itself (routed), which
    // Chromium's local network access checks would take for public pages framing 127.0.0.1.
    args: ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  await new Promise((r) => server?.once("exit", r) ?? r());
  rmSync(dataDir, { recursive: true, force: true });
});

async function signIn(page, token) {
  await page.goto(base + "/");
  await page.getByLabel("API key or token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#events tbody tr").first().waitFor();
}

test("sign in, list, page, filter, open an event with its diff, share the state by URL", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  await signIn(page, key);
  await page.screenshot({ path: join(artifacts, "list.png"), fullPage: true });
  // 62 events (and the key's creation): a page of 50, then the rest.
  assert.equal(await page.locator("#events tbody tr").count(), 50);
  await page.getByRole("button", { name: "Load more" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length > 50);
  assert.equal(await page.locator("#events tbody tr").count(), 63);
  assert.equal(await page.getByRole("button", { name: "Load more" }).isHidden(), true);
  // The histogram and the top lists count them too; the latest checkpoint covers them.
  await page.locator("#histogram a").first().waitFor();
  assert.match(await page.locator("#histogram-total").textContent(), /63 events, 1 failures/);
  await page.locator("#top-actors li").first().waitFor();
  assert.deepEqual(
    (await page.locator("#top-actors li").allTextContents()).slice(0, 3),
    ["u0 20", "u1 20", "u2 20"],
  );
  assert.match(await page.locator("#checkpoint").textContent(), /size63/);

  // Export the list as CSV: the header and a row per event.
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "CSV" }).click(),
  ]);
  const csv = await new Promise((resolve, reject) => {
    download.createReadStream().then((stream) => {
      const chunks = [];
      stream.on("data", (c) => chunks.push(c));
      stream.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      stream.on("error", reject);
    }, reject);
  });
  const lines = csv.trim().split("\n");
  assert.match(lines[0], /^id,/);
  assert.equal(lines.length, 1 + 63);

  // A top action is a link to the list of it.
  await page.locator("#top-actions a", { hasText: "asset.viewed" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 50);
  assert.match(page.url(), /action=asset.viewed/);
  await page.getByLabel("Action").fill("");

  // Filter by actor and full text.
  await page.getByLabel("Actor").fill("u-42");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);
  assert.match(page.url(), /actor_id=u-42/);
  await page.getByLabel("Actor").fill("");
  await page.getByLabel("Search").fill("laptop");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);

  // Open it: fields, the diff with the redacted password marked, links that filter.
  await page.locator("#events tbody tr").first().press("Enter");
  const detail = page.locator("#detail");
  await detail.waitFor();
  assert.match(await detail.textContent(), /asset\.updated/);
  assert.match(await detail.textContent(), /Ada Lovelace/);
  const redacted = page.locator("#changes td.redacted");
  assert.equal(await redacted.count(), 2, "the password's old and new value are marked");
  assert.equal(await redacted.first().textContent(), "[REDACTED]");
  assert.match(await page.locator("#changes").textContent(), /in_stock.*assigned/s);
  // Its seal is checked in the browser: leaf, proof, checkpoint, signature.
  await page.locator("#seal.verified").waitFor();
  assert.match(await page.locator("#seal").textContent(), /Verified: sealed at position 62/);
  assert.equal(await page.locator("#seal-steps li").count(), 6);
  await page.screenshot({ path: join(artifacts, "detail.png"), fullPage: true });
  await page.keyboard.press("Escape");
  assert.equal(await detail.isHidden(), true);

  // The timeline of the asset: its own event and the loan naming it, oldest first.
  await page.getByLabel("Search").fill("");
  await page.getByLabel("Target type").fill("asset");
  await page.getByLabel("Target id").fill("a-1");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByRole("button", { name: "Show the timeline of this record" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 2);
  const relations = await page.locator("#events tbody td.relation").allTextContents();
  assert.deepEqual(relations, ["target", "related"]);
  // The loan (a person as its target, an e-mail: personal digests) verifies too.
  await page.locator("#events tbody tr").nth(1).click();
  await page.locator("#seal.verified").waitFor();
  await page.keyboard.press("Escape");
  await page.screenshot({ path: join(artifacts, "timeline.png"), fullPage: true });
  const timelineUrl = page.url();
  assert.match(timelineUrl, /view=timeline/);
  await page.getByLabel("Target type").fill("");
  await page.getByLabel("Target id").fill("");
  await page.getByLabel("Search").fill("laptop");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);

  // The URL carries the state (never the credential): opened in another tab, it asks for a
  // credential, then shows the same list.
  const shared = await context.newPage();
  await shared.goto(page.url());
  await shared.getByLabel("API key or token").fill(key);
  await shared.getByRole("button", { name: "Sign in" }).click();
  await shared.locator("#events tbody tr").first().waitFor();
  assert.doesNotMatch(shared.url(), /st_/);
  assert.equal(await shared.locator("#events tbody tr").count(), 1);
  assert.equal(await shared.getByLabel("Search").inputValue(), "laptop");
  assert.deepEqual(problems, []);
  await context.close();
});

test("a bad credential is refused and the page says so", async () => {
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.getByLabel("API key or token").fill("st_nothingnothingnothingnothingnothingnothin0");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "sign in again" }).waitFor();
  assert.equal(await page.locator("#app").isHidden(), true);
  await page.close();
});

test("a viewer token sees only its scope, without statistics", async () => {
  const page = await browser.newPage();
  await signIn(page, viewer);
  await page.locator("#events tbody tr").first().waitFor();
  const actors = await page.locator("#events tbody tr td:nth-child(3)").allTextContents();
  assert.ok(actors.length > 0);
  for (const actor of actors) assert.match(actor, /u-42/);
  assert.equal(await page.locator("#histogram").isHidden(), true);
  await page.screenshot({ path: join(artifacts, "viewer.png"), fullPage: true });
  await page.close();
});

/** Runs axe-core on the page and fails on any serious or critical violation. */
async function assertAccessible(page, what) {
  await page.addScriptTag({ path: require.resolve("axe-core") });
  const result = await page.evaluate(() => window.axe.run(document));
  const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  assert.deepEqual(
    serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    what,
  );
}

/** The tenant's latest checkpoint size, as the API answers it. */
async function checkpointSize() {
  const response = await fetch(`${base}/api/v1/integrity/checkpoint`, { headers: { Authorization: `Bearer ${key}` } });
  return response.ok ? (await response.json()).size : 0;
}

test("statistics as charts whose bars open the list; an actor's activity by day", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await signIn(page, key);
  await page.getByRole("link", { name: "Statistics" }).click();
  await page.locator("#failures a").first().waitFor();
  assert.match(page.url(), /view=stats/);
  assert.equal(await page.locator("#events").isVisible(), false);
  assert.match(await page.locator("#histogram-total").textContent(), /events, 1 failures/);
  // Ten entries per top list here, as the API counts them; the events bars carry a failed part
  // where one failed.
  const now = Date.now();
  const stats = await call(
    "GET",
    `/api/v1/audit-logs/statistics?from=${new Date(now - 30 * 86400e3).toISOString()}&to=${new Date(now + 60e3).toISOString()}&top=10`,
    key,
  );
  assert.deepEqual(
    await page.locator("#top-targets li").allTextContents(),
    stats.top_targets.map((t) => `${t.type} ${t.id} ${t.count}`),
  );
  assert.deepEqual(
    await page.locator("#top-actors li").allTextContents(),
    stats.top_actors.map((t) => `${t.id} ${t.count}`),
  );
  assert.equal(await page.locator("#histogram .fail-part").count(), 1);
  await page.screenshot({ path: join(artifacts, "statistics.png"), fullPage: true });
  // The failures chart's bar opens the failed events of its bucket: the one failure.
  const failedBar = page.locator("#failures a", { has: page.locator(".fail-part[style*='100%']") });
  assert.match(await failedBar.getAttribute("aria-label"), /1 failures/);
  await failedBar.click();
  await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);
  assert.match(page.url(), /outcome=failure/);
  assert.match(page.url(), /range=custom/);
  assert.equal(await page.locator("#events tbody tr td:nth-child(2)").textContent(), "asset.updated");
  // A top target's bar opens that target's events: as many as it counted.
  await page.goto(base + "/?view=stats&range=30d");
  const bar = page.locator("#top-targets li", { hasText: "asset a3" });
  const counted = Number((await bar.locator(".count").textContent()).trim());
  await bar.getByRole("link").click();
  await page.waitForFunction((n) => document.querySelectorAll("#events tbody tr").length === n, counted);
  for (const target of await page.locator("#events tbody tr td:nth-child(4)").allTextContents()) {
    assert.equal(target, "asset a3");
  }

  // An actor's activity: from an event's detail, every event of that actor, under day headings.
  await page.goto(base + "/?actor_id=u1&range=30d");
  await page.locator("#events tbody tr").first().click();
  await page.getByRole("link", { name: "everything u1 did" }).click();
  await page.locator("#events tr.day").first().waitFor();
  assert.match(page.url(), /view=activity/);
  assert.equal(await page.locator("#list-title").textContent(), "Activity");
  assert.equal(await page.locator("#overview").isHidden(), true);
  const today = new Date().toLocaleDateString("en-GB", { weekday: "long", year: "numeric", month: "long", day: "numeric", timeZone: "UTC" });
  assert.deepEqual(await page.locator("#events tr.day").allTextContents(), [today]);
  const actors = await page.locator("#events tbody tr:not(.day) td:nth-child(3)").allTextContents();
  assert.equal(actors.length, 20);
  for (const actor of actors) assert.equal(actor, "u1");
  await page.screenshot({ path: join(artifacts, "activity.png"), fullPage: true });
  // Back to the list: the toggle leaves the actor filter in place.
  await page.getByRole("button", { name: "Show the list" }).click();
  // The list is cleared at once and filled when its page answers: wait for the rows, not the
  // cleared headings alone.
  await page.waitForFunction(
    () => document.querySelectorAll("#events tr.day").length === 0 && document.querySelectorAll("#events tbody tr").length === 20,
  );
  assert.doesNotMatch(page.url(), /view=/);
  for (const actor of await page.locator("#events tbody tr td:nth-child(3)").allTextContents()) assert.equal(actor, "u1");
  assert.deepEqual(problems, []);
  await context.close();
});

test("verify this log: signature, consistency with the checkpoint seen before, seals; a rewritten log is caught", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, key);
  await page.getByRole("link", { name: "Verify this log" }).first().click();
  await page.locator("#verify-result.verified").waitFor();
  const steps = async () => (await page.locator("#verify-steps li").allTextContents()).join("\n");
  assert.match(await steps(), /Ed25519 signature holds/);
  assert.match(await steps(), /no earlier checkpoint seen in this browser/);
  assert.match(await steps(), /20 of the 20 newest events/);
  assert.match(await page.locator("#verify-command").textContent(), /^sealtrail verify --export \S+ --public-key [A-Za-z0-9+\/=]{44}$/);
  const seen = await page.evaluate(() => JSON.parse(localStorage.getItem("sealtrail.seen.acme")));
  assert.ok(seen.size >= 63, JSON.stringify(seen));

  // The log grows; the next check proves the remembered checkpoint is a prefix of the new one.
  await call("POST", "/api/v1/events", key, [1, 2, 3].map((i) => ({ action: "asset.viewed", actor: { id: `late${i}` } })));
  for (let i = 0; i < 600 && (await checkpointSize()) < seen.size + 3; i++) await new Promise((r) => setTimeout(r, 50));
  await page.getByRole("button", { name: "Verify now" }).click();
  await page.waitForFunction((n) => /still in the log/.test(document.getElementById("verify-steps").textContent)
    && document.getElementById("verify-result").classList.contains("verified"), seen.size);
  assert.match(await steps(), new RegExp(`the ${seen.size} events of the checkpoint seen on .* are still in the log, unchanged`));
  await page.screenshot({ path: join(artifacts, "verify.png"), fullPage: true });
  const later = await page.evaluate(() => JSON.parse(localStorage.getItem("sealtrail.seen.acme")));
  assert.ok(later.size >= seen.size + 3);

  // A log that differs from the one seen before (another root at that size) is caught.
  await page.evaluate((s) => localStorage.setItem("sealtrail.seen.acme", JSON.stringify({ ...s, root_hash: "ab".repeat(32) })), seen);
  await page.getByRole("button", { name: "Verify now" }).click();
  await page.locator("#verify-result.failed").waitFor();
  assert.match(await page.locator("#verify-result").textContent(), /not the one this browser verified/);
  // …and so is an altered consistency proof, and a remembered checkpoint is not replaced by a failing one.
  await page.evaluate((s) => localStorage.setItem("sealtrail.seen.acme", JSON.stringify(s)), seen);
  await page.route(/\/api\/v1\/integrity\/consistency/, async (route) => {
    const response = await route.fetch();
    const proof = await response.json();
    proof.proof[0] = proof.proof[0].replace(/^./, (c) => (c === "0" ? "1" : "0"));
    await route.fulfill({ response, json: proof });
  });
  await page.getByRole("button", { name: "Verify now" }).click();
  await page.waitForFunction(() => document.getElementById("verify-result").classList.contains("failed"));
  assert.match(await page.locator("#verify-result").textContent(), /not the one this browser verified/);
  assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem("sealtrail.seen.acme"))), seen);
  await page.unroute(/\/api\/v1\/integrity\/consistency/);
  // An event served other than sealed is named.
  await page.route(/\/api\/v1\/audit-logs\/[0-9a-f-]{36}$/, async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, body: (await response.text()).replace('"asset.viewed"', '"asset.deleted"') });
  });
  await page.getByRole("button", { name: "Verify now" }).click();
  await page.waitForFunction(() => document.getElementById("verify-result").classList.contains("failed"));
  assert.match(await page.locator("#verify-result").textContent(), /event\(s\) shown are not what was sealed/);
  assert.match(await steps(), /is not what was sealed/);
  await page.screenshot({ path: join(artifacts, "verify-failed.png"), fullPage: true });
  await context.close();
});

test("no serious accessibility violation, in light and dark themes and on a phone", async () => {
  for (const [name, options] of [
    ["light", { colorScheme: "light" }],
    ["dark", { colorScheme: "dark" }],
    ["phone", { viewport: { width: 390, height: 844 }, colorScheme: "light" }],
  ]) {
    // axe is injected past the page's content security policy, which allows no foreign script.
    const context = await browser.newContext({ ...options, bypassCSP: true });
    const page = await context.newPage();
    await signIn(page, key);
    await page.locator("#events tbody tr").first().click();
    await page.locator("#detail").waitFor();
    await assertAccessible(page, `${name}, list and detail`);
    await page.screenshot({ path: join(artifacts, `a11y-${name}.png`), fullPage: true });
    // The statistics, an actor's activity and the verification panel too.
    for (const [view, ready] of [
      ["?view=stats&range=30d", "#failures a"],
      ["?view=activity&actor_id=u1&range=30d", "#events tr.day"],
      ["?view=verify&range=all", "#verify-result.verified"],
    ]) {
      await page.goto(base + "/" + view);
      await page.locator(ready).first().waitFor();
      await assertAccessible(page, `${name}, ${view}`);
    }
    await context.close();
  }
});

test("an altered event or proof is caught in the browser", async () => {
  for (const [what, pattern, alter] of [
    [
      "event",
      /\/api\/v1\/audit-logs\/[0-9a-f-]{36}$/,
      (text) => text.replace('"Laptop"', '"Laptoq"'),
    ],
    [
      "proof",
      /\/api\/v1\/integrity\/proof\//,
      (text) => {
        const proof = JSON.parse(text);
        proof.audit_path[0] = proof.audit_path[0].replace(/^./, (c) => (c === "0" ? "1" : "0"));
        return JSON.stringify(proof);
      },
    ],
  ]) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.route(pattern, async (route) => {
      const response = await route.fetch();
      await route.fulfill({ response, body: alter(await response.text()) });
    });
    await signIn(page, key);
    await page.getByLabel("Search").fill("laptop");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForFunction(() => document.querySelectorAll("#events tbody tr").length === 1);
    await page.locator("#events tbody tr").first().click();
    await page.locator("#seal.failed").waitFor();
    assert.match(await page.locator("#seal").textContent(), /Verification failed/, what);
    await page.screenshot({ path: join(artifacts, `tampered-${what}.png`), fullPage: true });
    await context.close();
  }
});

test("the embeddable viewer shows only its token's scope, framed only by allowed origins", async () => {
  const headers = (await fetch(`${base}/viewer`)).headers;
  assert.match(headers.get("content-security-policy"), /frame-ancestors http:\/\/localhost:9$/);
  assert.equal(headers.get("x-frame-options"), null);
  const viewed = async () =>
    (await call("GET", "/api/v1/audit-logs?action=audit.viewed&limit=1000", key)).items.length;
  const before = await viewed();

  // axe is injected past the page's policy, as in the accessibility test.
  const context = await browser.newContext({ bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${base}/viewer#token=${viewer}`);
  await page.locator("#timeline li").first().waitFor();
  assert.equal(await page.locator("#title").textContent(), "Activity of actor u-42");
  const items = await page.locator("#timeline > li").allTextContents();
  assert.equal(items.length, 1);
  assert.match(items[0], /asset\.updated by Ada Lovelace failed: locked/);
  assert.match(items[0], /status: in_stock → assigned/);
  assert.doesNotMatch(page.url(), /token/, "the token leaves the address bar");
  assert.equal(await viewed(), before + 1, "the view is recorded");
  await page.addScriptTag({ path: require.resolve("axe-core") });
  const result = await page.evaluate(() => window.axe.run(document));
  const serious = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  assert.deepEqual(serious.map((v) => v.id), []);
  await page.screenshot({ path: join(artifacts, "viewer-embed.png"), fullPage: true });
  await context.close();

  // Framed by a host page: from an allowed origin it shows, from another it is refused.
  for (const [origin, shown] of [["http://localhost:9", true], ["http://localhost:10", false]]) {
    const host = await browser.newPage();
    await host.route(`${origin}/**`, (route) =>
      route.fulfill({
        contentType: "text/html",
        body: `<!doctype html><title>host</title><iframe title="audit" src="${base}/viewer#token=${viewer}" width="600" height="400"></iframe>`,
      }),
    );
    await host.goto(`${origin}/`);
    const frame = host.frames()[1];
    if (shown) {
      await frame.locator("#timeline li").first().waitFor();
      assert.equal(await frame.locator("#title").textContent(), "Activity of actor u-42");
    } else {
      const content = await frame.evaluate(() => document.querySelector("#title")?.textContent ?? null).catch(() => null);
      assert.equal(content, null, "a page of another origin cannot frame the viewer");
    }
    await host.close();
  }
});
