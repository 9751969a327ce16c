// The web UI's verifier (`verify.js`) run in Node against a fixture the Rust verifier checks too
// (`crates/ledger/tests/golden/seal-first-form.json`, pinned by the ledger's `v2` tests): seal
// material in its first form (mark 0x80, digests given beside the openings), as archives and
// exports written until 2026-12 carry it, still hashes the event to its leaf, and an altered
// value does not.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import vm from "node:vm";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
vm.runInThisContext(readFileSync(here("../verify.js"), "utf8"));
const { entryOf } = globalThis.SealtrailVerify;
const fixture = JSON.parse(readFileSync(here("../../../ledger/tests/golden/seal-first-form.json"), "utf8"));

async function leafOf(eventText, seal) {
  const entry = await entryOf(eventText, seal);
  const bytes = new Uint8Array(entry.length + 1);
  bytes.set(entry, 1);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Buffer.from(digest).toString("hex");
}

test("seal material in its first form still verifies in the browser's verifier", async () => {
  assert.ok(fixture.seal.personal.startsWith("80"));
  const text = JSON.stringify(fixture.event);
  assert.equal(await leafOf(text, fixture.seal), fixture.leaf_hash);
  // An altered personal value no longer hashes to the leaf: its opening digests what is shown.
  const altered = structuredClone(fixture.event);
  altered.actor.email = "someone@else.example";
  assert.notEqual(await leafOf(JSON.stringify(altered), fixture.seal), fixture.leaf_hash);
  // Malformed material is refused, not guessed at.
  await assert.rejects(entryOf(text, { ...fixture.seal, personal: fixture.seal.personal.slice(0, 40) }));
});
