// `audit-ledger verify-bundle FILE`: checks an evidence bundle (docs/evidence-bundle.md)
// offline. Only the chain module and the file system: no server code, no network.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { parseVerifierKey, splitBundleLines, verifyBundle, type BundleVerdict, type VerifierKey } from "../../chain/index.js";

export interface VerifyBundleCliOptions {
  trustedKey: string[];
  json?: boolean;
}

/** A problem with how the command was called or with reading the file: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Verifies `file` ("-" for stdin), prints the verdict, and returns the exit code (0 valid, 1 invalid). */
export async function runVerifyBundle(file: string, o: VerifyBundleCliOptions, out: (text: string) => void = (t) => process.stdout.write(t)): Promise<number> {
  const trustedKeys: VerifierKey[] = o.trustedKey.map((text) => {
    try {
      return parseVerifierKey(text);
    } catch (err) {
      throw new UsageError(`--trusted-key ${JSON.stringify(text)}: ${(err as Error).message}`);
    }
  });
  let input: NodeJS.ReadableStream;
  if (file === "-") {
    input = process.stdin;
  } else {
    try {
      if ((await stat(file)).isDirectory()) throw new Error("is a directory");
    } catch (err) {
      throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
    }
    input = createReadStream(file);
  }
  let verdict: BundleVerdict;
  try {
    verdict = await verifyBundle(splitBundleLines(input as AsyncIterable<Uint8Array>), { trustedKeys });
  } catch (err) {
    // I/O errors carry a code (EACCES, EISDIR, ...); anything else is a bug, shown as is.
    if ((err as NodeJS.ErrnoException).code === undefined) throw err;
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  } finally {
    if (file !== "-") (input as ReturnType<typeof createReadStream>).destroy();
  }
  out(o.json ? JSON.stringify(verdict) + "\n" : formatVerdict(verdict));
  return verdict.ok ? 0 : 1;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The verdict for a person: what was checked, or where it failed, then any warnings. */
export function formatVerdict(v: BundleVerdict): string {
  const lines: string[] = [];
  const range = v.from_seq === null || v.to_seq === null
    ? ""
    : v.to_seq > v.from_seq
      ? `entries seq ${v.from_seq} to ${v.to_seq - 1}`
      : `no entries (empty window at seq ${v.from_seq})`;
  const what = v.chain === null ? "evidence bundle" : `evidence bundle of chain ${JSON.stringify(v.chain)}, ${range}`;
  const keys = v.keys_trusted_from === "pinned" ? "against the pinned keys" : "against the bundle's own keys (self-asserted)";
  if (v.ok) {
    lines.push(`VALID ${what}`);
    lines.push(`  origin       ${v.origin}`);
    lines.push(`  entries      ${plural(v.entries, "entry", "entries")}: hashes and links recomputed, Merkle leaves checked against the signed roots`);
    lines.push(`  payloads     ${v.payloads_checked} salted digest${v.payloads_checked === 1 ? "" : "s"} verified`);
    lines.push(`  redacted     ${v.redacted.length === 0 ? "none" : `seq ${v.redacted.join(", ")} (payload erased by a redaction entry: reported, not broken)`}`);
  } else {
    const f = v.first_failure!;
    lines.push(`FAILED at line ${f.line} (${f.item}): ${f.reason}`);
    if (v.chain !== null) lines.push(`  ${what}`);
    lines.push(`  verified before the failure: ${plural(v.entries, "entry", "entries")}, ${plural(v.payloads_checked, "payload")}, ${plural(v.consistency_checked, "consistency proof")}`);
  }
  if (v.checkpoints.length > 0) {
    lines.push(`  checkpoints  ${plural(v.checkpoints.length, "signature")} verified ${keys}; ${v.checkpoints_checked} Merkle root${v.checkpoints_checked === 1 ? "" : "s"} matched`);
    const width = Math.max(...v.checkpoints.map((c) => String(c.size).length));
    for (const c of v.checkpoints) {
      lines.push(`               size ${String(c.size).padEnd(width)}  signed by ${c.key}${c.anchor ? "  (anchor)" : ""}`);
    }
  }
  if (v.ok) {
    lines.push(`  consistency  ${plural(v.consistency_checked, "proof")} between consecutive checkpoints verified`);
    lines.push(`  batches      ${v.batches === 0 ? "none" : `${v.batches} agent batch signature${v.batches === 1 ? "" : "s"}, ${v.batches_checked} checked`}`);
  }
  for (const w of v.warnings) lines.push(`warning: ${w}`);
  return lines.join("\n") + "\n";
}
