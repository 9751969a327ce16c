// Checks, in the browser, that an event is what was sealed: its leaf is recomputed from the
// event as served (docs/integrity.md §2–4) and its seal material, folded with the inclusion
// proof into the root of a checkpoint (§5), whose Ed25519 signature is checked against the
// published key (§6). SHA-256 and Ed25519 are WebCrypto's; nothing here trusts the server's
// word for a hash.
"use strict";

(() => {
  const utf8 = new TextEncoder();

  /** Reads JSON keeping each number's text (JSON.parse would lose 2^53+ and 1.0 vs 1). */
  function parseJson(text) {
    let i = 0;
    const ws = () => {
      while (i < text.length && " \t\n\r".includes(text[i])) i++;
    };
    const value = () => {
      ws();
      const c = text[i];
      if (c === "{") {
        i++;
        const members = [];
        ws();
        if (text[i] === "}") {
          i++;
          return { object: members };
        }
        for (;;) {
          ws();
          const key = string();
          ws();
          if (text[i++] !== ":") throw new Error("bad JSON");
          members.push([key, value()]);
          ws();
          const next = text[i++];
          if (next === "}") return { object: members };
          if (next !== ",") throw new Error("bad JSON");
        }
      }
      if (c === "[") {
        i++;
        const items = [];
        ws();
        if (text[i] === "]") {
          i++;
          return { array: items };
        }
        for (;;) {
          items.push(value());
          ws();
          const next = text[i++];
          if (next === "]") return { array: items };
          if (next !== ",") throw new Error("bad JSON");
        }
      }
      if (c === '"') return { string: string() };
      for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
        if (text.startsWith(word, i)) {
          i += word.length;
          return { literal: v };
        }
      }
      const match = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
      if (!match) throw new Error("bad JSON");
      i += match[0].length;
      return { number: match[0] };
    };
    const string = () => {
      const start = i;
      i++;
      while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      i++;
      return JSON.parse(text.slice(start, i));
    };
    const result = value();
    ws();
    if (i !== text.length) throw new Error("bad JSON");
    return result;
  }

  /** Member `key` of a parsed object, or undefined. */
  function get(node, key) {
    if (!node || !node.object) return undefined;
    const found = node.object.find(([k]) => k === key);
    return found ? found[1] : undefined;
  }
  const present = (node) => node !== undefined && !(node.literal === null && "literal" in node);
  const str = (node) => node.string;

  class Writer {
    constructor() {
      this.parts = [];
    }
    bytes(b) {
      this.parts.push(b);
    }
    u8(n) {
      this.bytes(Uint8Array.of(n));
    }
    u16(n) {
      this.bytes(Uint8Array.of(n >> 8, n & 255));
    }
    u32(n) {
      const b = new Uint8Array(4);
      new DataView(b.buffer).setUint32(0, n);
      this.bytes(b);
    }
    u64(n) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt(n));
      this.bytes(b);
    }
    i64(n) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigInt64(0, BigInt(n));
      this.bytes(b);
    }
    str(s) {
      const b = utf8.encode(s);
      this.u32(b.length);
      this.bytes(b);
    }
    opt(node, write) {
      if (present(node)) {
        this.u8(1);
        write(node);
      } else {
        this.u8(0);
      }
    }
    json(node) {
      if ("literal" in node) {
        this.u8(node.literal === null ? 0 : node.literal ? 2 : 1);
      } else if ("number" in node) {
        const text = node.number;
        if (/^-?\d+$/.test(text)) {
          const n = BigInt(text);
          if (n >= -(2n ** 63n) && n < 2n ** 63n) {
            this.u8(3);
            this.i64(n);
            return;
          }
          if (n >= 0n && n < 2n ** 64n) {
            this.u8(4);
            this.u64(n);
            return;
          }
        }
        const b = new Uint8Array(8);
        new DataView(b.buffer).setFloat64(0, Number(text));
        this.u8(5);
        this.bytes(b);
      } else if ("string" in node) {
        this.u8(6);
        this.str(node.string);
      } else if (node.array) {
        this.u8(7);
        this.u32(node.array.length);
        node.array.forEach((item) => this.json(item));
      } else {
        this.u8(8);
        this.u32(node.object.length);
        const keyed = node.object.map(([k, v]) => [utf8.encode(k), k, v]);
        keyed.sort((a, b) => compareBytes(a[0], b[0]));
        for (const [, k, v] of keyed) {
          this.str(k);
          this.json(v);
        }
      }
    }
    done() {
      const length = this.parts.reduce((n, p) => n + p.length, 0);
      const out = new Uint8Array(length);
      let at = 0;
      for (const p of this.parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    }
  }

  function compareBytes(a, b) {
    for (let k = 0; k < Math.min(a.length, b.length); k++) if (a[k] !== b[k]) return a[k] - b[k];
    return a.length - b.length;
  }

  const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  const fromHex = (text) => Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
  const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

  /** Microseconds since the epoch of an RFC 3339 UTC time as the server writes it. */
  function micros(text) {
    const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?Z$/.exec(text);
    if (!m) throw new Error(`not a UTC time: ${text}`);
    const seconds = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000;
    const fraction = (m[7] || "").padEnd(6, "0").slice(0, 6);
    return BigInt(seconds) * 1000000n + BigInt(fraction);
  }

  const CATEGORIES = ["create", "read", "update", "delete", "auth", "other"];
  const ACTOR_TYPES = ["user", "service", "system", "anonymous"];

  /** Fields 1–11 of an entry (§4), the same in every version: the version byte up to `error`. */
  function writeHead(w, e, version) {
    w.u8(version);
    w.str(str(get(e, "tenant")));
    w.u64(get(e, "seq").number);
    w.bytes(fromHex(str(get(e, "id")).replace(/-/g, "")));
    w.i64(micros(str(get(e, "recorded_at"))));
    w.i64(micros(str(get(e, "occurred_at"))));
    w.str(str(get(e, "action")));
    w.u8(CATEGORIES.indexOf(str(get(e, "category"))));
    w.opt(get(e, "event_type"), (n) => w.str(str(n)));
    w.u8(str(get(e, "outcome")) === "failure" ? 1 : 0);
    w.opt(get(e, "error"), (n) => w.str(str(n)));
  }

  /** The entry (§4) of an event's JSON text with its seal `{prev, personal}` (hex). */
  function encodeEntry(eventText, seal) {
    const e = parseJson(eventText);
    const mask = fromHex(seal.personal);
    const digests = [];
    let at = 1;
    for (let bit = 0; bit < 5; bit++) {
      if (mask.length && mask[0] & (1 << bit)) {
        digests[bit] = mask.slice(at, at + 32);
        at += 32;
      }
    }
    const digest = (bit) => (digests[bit] ? { digest: digests[bit] } : undefined);
    const w = new Writer();
    writeHead(w, e, 1);
    const actor = get(e, "actor");
    w.str(str(get(actor, "id")));
    w.u8(ACTOR_TYPES.indexOf(str(get(actor, "type"))));
    w.opt(digest(0), (d) => w.bytes(d.digest));
    w.opt(digest(1), (d) => w.bytes(d.digest));
    w.opt(get(e, "target"), (t) => {
      w.str(str(get(t, "type")));
      w.str(str(get(t, "id")));
      if (digests[4]) {
        w.u8(2);
        w.bytes(digests[4]);
      } else if (present(get(t, "name"))) {
        w.u8(1);
        w.str(str(get(t, "name")));
      } else {
        w.u8(0);
      }
    });
    w.opt(get(e, "organization"), (o) => {
      w.str(str(get(o, "id")));
      w.opt(get(o, "name"), (n) => w.str(str(n)));
    });
    w.opt(get(e, "context"), (c) => {
      w.opt(digest(2), (d) => w.bytes(d.digest));
      w.opt(digest(3), (d) => w.bytes(d.digest));
      for (const key of ["session_id", "correlation_id", "endpoint", "method"]) {
        w.opt(get(c, key), (n) => w.str(str(n)));
      }
      w.opt(get(c, "status_code"), (n) => w.u16(Number(n.number)));
      w.opt(get(c, "duration_ms"), (n) => w.json(n));
    });
    const changes = get(e, "changes").array;
    w.u32(changes.length);
    for (const change of changes) {
      w.str(str(get(change, "field")));
      w.json(get(change, "old_value"));
      w.json(get(change, "new_value"));
    }
    const related = get(e, "related").array;
    w.u32(related.length);
    for (const r of related) {
      w.str(str(get(r, "type")));
      w.str(str(get(r, "id")));
    }
    w.opt(get(e, "metadata"), (m) => w.json(m));
    w.bytes(fromHex(seal.prev));
    return w.done();
  }

  /**
   * The seal material of a version-2 entry (docs/integrity.md §5): per slot, the opening of a
   * held value or the digest of an erased one. Mark 0x81 is today's form; mark 0x80, the first
   * one, gave every slot's digest before its flag and is still read.
   */
  function sealSlots(bytes) {
    const slots = new Map();
    const withDigests = bytes[0] === 0x80;
    let at = 1;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const take = (n) => {
      if (at + n > bytes.length) throw new Error("malformed seal material");
      const out = bytes.slice(at, at + n);
      at += n;
      return out;
    };
    while (at < bytes.length) {
      const code = bytes[at++];
      if (code > 8) throw new Error("malformed seal material");
      let key = String(code);
      if (code >= 7) {
        take(4);
        key += `:${view.getUint32(at - 4)}`;
      }
      let digest = withDigests ? take(32) : null;
      const has = take(1)[0];
      let opening = null;
      if (has === 1) {
        opening = take(16);
      } else if (has === 0) {
        if (!digest) digest = take(32);
      } else {
        throw new Error("malformed seal material");
      }
      if (slots.has(key)) throw new Error("malformed seal material");
      slots.set(key, { digest, opening });
    }
    return slots;
  }

  const FIELDS = ["actor.id", "actor.name", "actor.email", "target.id", "target.name", "context.ip", "context.user_agent", "changes.old_value", "changes.new_value"];
  const REDACTED_JSON = (() => {
    const w = new Writer();
    w.json({ string: "[REDACTED]" });
    return w.done();
  })();

  /**
   * The version-2 entry (§4.2) of an event's JSON text with its seal: a value whose opening is
   * given is digested again from what is served (HMAC-SHA-256 under the opening, §3.2); a slot
   * without one must show what an erased value shows, and takes the given digest.
   */
  async function encodeEntryV2(eventText, seal) {
    const e = parseJson(eventText);
    const slots = sealSlots(fromHex(seal.personal));
    const text = (node) => (present(node) ? utf8.encode(str(node)) : undefined);
    const jsonBytes = (node) => {
      const w = new Writer();
      w.json(node);
      return w.done();
    };
    /** The digest to write for a slot, or undefined to write the value in the clear. */
    const digestOf = async (code, index, value) => {
      const slot = slots.get(index === undefined ? String(code) : `${code}:${index}`);
      if (!slot) return undefined;
      if (slot.opening) {
        if (!value) return undefined;
        const key = await crypto.subtle.importKey("raw", slot.opening, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
        const w = new Writer();
        w.bytes(utf8.encode(FIELDS[code]));
        w.u8(0);
        w.bytes(value);
        return new Uint8Array(await crypto.subtle.sign("HMAC", key, w.done()));
      }
      if (!value) return slot.digest;
      const shown = new TextDecoder().decode(value);
      const erasedShows = code === 0 || code === 3 ? /^anon_[0-9a-f]{16}$/.test(shown) : code >= 7 && compareBytes(value, REDACTED_JSON) === 0;
      return erasedShows ? slot.digest : undefined;
    };
    const w = new Writer();
    writeHead(w, e, 2);
    const actor = get(e, "actor");
    const actorId = await digestOf(0, undefined, text(get(actor, "id")));
    if (!actorId) throw new Error("the seal does not cover the actor's id");
    w.bytes(actorId);
    w.u8(ACTOR_TYPES.indexOf(str(get(actor, "type"))));
    const optDigest = (d) => {
      if (d) {
        w.u8(1);
        w.bytes(d);
      } else {
        w.u8(0);
      }
    };
    optDigest(await digestOf(1, undefined, text(get(actor, "name"))));
    optDigest(await digestOf(2, undefined, text(get(actor, "email"))));
    const target = get(e, "target");
    if (present(target)) {
      w.u8(1);
      w.str(str(get(target, "type")));
      const id = await digestOf(3, undefined, text(get(target, "id")));
      if (id) {
        w.u8(2);
        w.bytes(id);
        const name = await digestOf(4, undefined, text(get(target, "name")));
        if (name) {
          w.u8(2);
          w.bytes(name);
        } else {
          w.u8(0);
        }
      } else {
        w.u8(1);
        w.str(str(get(target, "id")));
        w.opt(get(target, "name"), (n) => w.str(str(n)));
      }
    } else {
      w.u8(0);
    }
    w.opt(get(e, "organization"), (o) => {
      w.str(str(get(o, "id")));
      w.opt(get(o, "name"), (n) => w.str(str(n)));
    });
    const context = get(e, "context");
    if (present(context)) {
      w.u8(1);
      optDigest(await digestOf(5, undefined, text(get(context, "ip"))));
      optDigest(await digestOf(6, undefined, text(get(context, "user_agent"))));
      for (const key of ["session_id", "correlation_id", "endpoint", "method"]) {
        w.opt(get(context, key), (n) => w.str(str(n)));
      }
      w.opt(get(context, "status_code"), (n) => w.u16(Number(n.number)));
      w.opt(get(context, "duration_ms"), (n) => w.json(n));
    } else {
      w.u8(0);
    }
    const changes = get(e, "changes").array;
    w.u32(changes.length);
    for (const [index, change] of changes.entries()) {
      w.str(str(get(change, "field")));
      for (const [code, key] of [[7, "old_value"], [8, "new_value"]]) {
        const value = jsonBytes(get(change, key));
        const digest = await digestOf(code, index, value);
        if (digest) {
          w.u8(9);
          w.bytes(digest);
        } else {
          w.bytes(value);
        }
      }
    }
    const related = get(e, "related").array;
    w.u32(related.length);
    for (const r of related) {
      w.str(str(get(r, "type")));
      w.str(str(get(r, "id")));
    }
    w.opt(get(e, "metadata"), (m) => w.json(m));
    w.bytes(fromHex(seal.prev));
    return w.done();
  }

  /** The entry of an event's JSON text with its seal, of the version its seal material names. */
  async function entryOf(eventText, seal) {
    return /^8[01]/.test(seal.personal) ? encodeEntryV2(eventText, seal) : encodeEntry(eventText, seal);
  }

  async function sha256(...parts) {
    const w = new Writer();
    parts.forEach((p) => w.bytes(p));
    return new Uint8Array(await crypto.subtle.digest("SHA-256", w.done()));
  }

  /** Folds a leaf and its audit path (RFC 9162 §2.1.3.2) into the root it proves. */
  async function rootFrom(leaf, index, size, path) {
    let fn = BigInt(index);
    let sn = BigInt(size) - 1n;
    let r = leaf;
    for (const sibling of path.map(fromHex)) {
      if (sn === 0n) throw new Error("the proof is longer than the tree allows");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(Uint8Array.of(1), sibling, r);
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        r = await sha256(Uint8Array.of(1), r, sibling);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("the proof is shorter than the tree needs");
    return r;
  }

  /**
   * Checks a checkpoint's signed note against its fields and the published key, recording each
   * step through `step(what, ok)`. Answers whether every step held.
   */
  async function checkpointSteps(checkpoint, publicKeys, step) {
    const [body] = checkpoint.note.split("\n\n");
    const lines = body.split("\n");
    const noteRoot = hex(fromBase64(lines[2] || ""));
    if (!step("the signed note names that size and root", lines[1] === String(checkpoint.size) && noteRoot === checkpoint.root_hash)) {
      return false;
    }
    const published = publicKeys.keys.find((k) => k.key_id === checkpoint.key_id);
    if (!step(`the signing key ${checkpoint.key_id} is published`, Boolean(published))) return false;
    const key = await crypto.subtle.importKey("raw", fromBase64(published.public_key), { name: "Ed25519" }, false, ["verify"]);
    const signed = await crypto.subtle.verify("Ed25519", key, fromBase64(checkpoint.signature), utf8.encode(`${body}\n`));
    return step("the checkpoint's Ed25519 signature holds", signed);
  }

  /** Checks a checkpoint alone (its note and signature). Answers `{ok, steps}`. */
  async function verifyCheckpoint(checkpoint, publicKeys) {
    const steps = [];
    const step = (what, ok) => {
      steps.push({ what, ok });
      return ok;
    };
    try {
      await checkpointSteps(checkpoint, publicKeys, step);
    } catch (error) {
      step(`the check could not run: ${error.message}`, false);
    }
    return { ok: steps.length > 0 && steps.every((s) => s.ok), steps };
  }

  /**
   * Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `oldSize` with root
   * `oldRoot` is a prefix of the tree of `newSize` with root `newRoot` (roots in hex). Answers
   * whether it holds; a malformed proof does not.
   */
  async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
    let first = BigInt(oldSize);
    let second = BigInt(newSize);
    if (first === 0n || first > second) return false;
    if (first === second) return proof.length === 0 && oldRoot === newRoot;
    const path = proof.map(fromHex);
    if ((first & (first - 1n)) === 0n) path.unshift(fromHex(oldRoot));
    if (path.length === 0) return false;
    let fn = first - 1n;
    let sn = second - 1n;
    while ((fn & 1n) === 1n) {
      fn >>= 1n;
      sn >>= 1n;
    }
    let fr = path[0];
    let sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) return false;
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await sha256(Uint8Array.of(1), c, fr);
        sr = await sha256(Uint8Array.of(1), c, sr);
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      } else {
        sr = await sha256(Uint8Array.of(1), sr, c);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    return sn === 0n && hex(fr) === oldRoot && hex(sr) === newRoot;
  }

  /**
   * Checks an event (its JSON text) against its inclusion proof (with seal), the checkpoint it
   * is proven under and the published keys. Answers `{ok, steps}`: each step says what was
   * checked and whether it held.
   */
  async function verifyEvent(eventText, proof, checkpoint, publicKeys) {
    const steps = [];
    const step = (what, ok) => {
      steps.push({ what, ok });
      return ok;
    };
    try {
      const leaf = await sha256(Uint8Array.of(0), await entryOf(eventText, proof.seal));
      if (!step("the event hashes to its leaf", hex(leaf) === proof.leaf_hash)) return { ok: false, steps };
      const root = await rootFrom(leaf, proof.leaf_index, proof.tree_size, proof.audit_path);
      step(`the proof folds it into the root of the tree of ${proof.tree_size}`, proof.tree_size === checkpoint.size);
      if (!step("that root is the checkpoint's", hex(root) === checkpoint.root_hash)) return { ok: false, steps };
      if (!(await checkpointSteps(checkpoint, publicKeys, step))) return { ok: false, steps };
      return { ok: steps.every((s) => s.ok), steps };
    } catch (error) {
      step(`the check could not run: ${error.message}`, false);
      return { ok: false, steps };
    }
  }

  globalThis.SealtrailVerify = { parseJson, encodeEntry, entryOf, rootFrom, verifyEvent, verifyCheckpoint, verifyConsistency };
})();
