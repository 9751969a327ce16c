// How fast the web UI's first page is interactive over a large store (issue 14's target:
// ≤ 300 ms at 1M events). Not a test: run by hand, results in BENCHMARKS.md.
//
//   SEALTRAIL_BIN=target/release/sealtrail node crates/server/ui/tests/bench.mjs 1000000 20
//
// Starts a server on a fresh embedded store, ingests N events over HTTP (batches of 5 000,
// spread over the last 30 days), waits until they are indexed, then in headless Chromium
// signs in once and loads each page R times: from navigation start until the first page of the
// list is in the table and the histogram is drawn; then the statistics page until its charts
// are drawn. Prints the median and p95 of each.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

const total = Number(process.argv[2] || 1_000_000);
const runs = Number(process.argv[3] || 20);
const ADMIN = "st_uibenchadminuibenchadminuibenchadminuib00";
const bin = process.env.SEALTRAIL_BIN || "target/release/sealtrail";

const port = await new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});
const base = `http://127.0.0.1:${port}`;
const dataDir = mkdtempSync(join(tmpdir(), "sealtrail-ui-bench-"));
const server = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
  env: { ...process.env, SEALTRAIL_ADMIN_TOKEN: ADMIN, SEALTRAIL_LOG: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
try {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  const post = async (path, token, body) => {
    for (;;) {
      const r = await fetch(base + path, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (r.status === 503) {
        await new Promise((res) => setTimeout(res, 200));
        continue;
      }
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return r.json();
    }
  };
  const key = (await post("/api/v1/keys", ADMIN, { tenant: "acme", scopes: ["ingest", "read"] })).token;
  const now = Date.now();
  const started = Date.now();
  for (let done = 0; done < total; ) {
    const batch = [];
    for (let i = 0; i < 5000 && done < total; i++, done++) {
      batch.push({
        action: ["asset.viewed", "asset.updated", "user.login", "invoice.paid"][done % 4],
        actor: { id: `u${done % 997}` },
        target: { type: "asset", id: `a${done % 10007}` },
        occurred_at: new Date(now - Math.floor(((total - done) / total) * 30 * 86400e3)).toISOString(),
      });
    }
    await post("/api/v1/events", key, batch);
  }
  console.log(`ingested ${total} events in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (;;) {
    const ready = await (await fetch(`${base}/readyz`)).json();
    if (!ready.index_lag) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || execFileSync("sh", ["-c", "command -v chromium"]).toString().trim(),
    args: ["--no-sandbox"],
  });
  const page = await browser.newPage();
  await page.goto(base + "/");
  await page.getByLabel("API key or token").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#events tbody tr").first().waitFor();
  // Each page: the URL, and what must be on it for it to count as interactive.
  const pages = [
    ["first page of the list", "/?range=30d",
      () => document.querySelectorAll("#events tbody tr").length === 50 && document.querySelectorAll("#histogram a").length > 0],
    ["statistics (30 days, top 10)", "/?view=stats&range=30d",
      () => document.querySelectorAll("#failures a").length > 0 && document.querySelectorAll("#top-targets li").length === 10],
  ];
  for (const [name, path, ready] of pages) {
    const times = [];
    for (let i = 0; i < runs; i++) {
      const t0 = Date.now();
      await page.goto(base + path);
      await page.waitForFunction(ready);
      times.push(Date.now() - t0);
    }
    times.sort((a, b) => a - b);
    const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
    console.log(`${name} interactive over ${total} events: median ${at(0.5)} ms, p95 ${at(0.95)} ms (${runs} loads)`);
  }
  await browser.close();
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.once("exit", r));
  rmSync(dataDir, { recursive: true, force: true });
}
