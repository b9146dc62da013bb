// `audit-ledger export`: streams an evidence bundle from the server into a file,
// written under a temporary name and renamed only when complete.
import { createWriteStream, renameSync, rmSync } from "node:fs";
import { once } from "node:events";
import type { Client } from "@connectrpc/connect";
import type { LedgerService } from "../../gen/auditledger/v1/ledger_service_pb.js";

/** "--from 120" is a seq, "--from 2026-11-22T10:00:00Z" a time. */
function bound(value: string | undefined, flag: string): { seq?: bigint; time: string } {
  if (value === undefined) return { time: "" };
  if (/^\d+$/.test(value)) return { seq: BigInt(value), time: "" };
  if (Number.isNaN(Date.parse(value))) throw new Error(`${flag}: "${value}" is neither a seq nor an RFC 3339 time`);
  return { time: value };
}

export async function runExport(ledger: Client<typeof LedgerService>, chain: string, o: { from?: string; to?: string; out: string }): Promise<void> {
  const from = bound(o.from, "--from");
  const to = bound(o.to, "--to");
  const stream = ledger.export({ chain, fromSeq: from.seq, toSeq: to.seq, fromTime: from.time, toTime: to.time });
  if (o.out === "-") {
    for await (const { chunk } of stream) if (!process.stdout.write(chunk)) await once(process.stdout, "drain");
    return;
  }
  const partial = `${o.out}.partial`;
  const file = createWriteStream(partial);
  let bytes = 0;
  try {
    for await (const { chunk } of stream) {
      bytes += chunk.length;
      if (!file.write(chunk)) await once(file, "drain");
    }
    file.end();
    await once(file, "finish");
    renameSync(partial, o.out);
  } catch (err) {
    file.destroy();
    rmSync(partial, { force: true });
    throw err;
  }
  console.error(`wrote ${o.out} (${bytes} bytes); check it offline with: audit-ledger verify-bundle ${o.out}`);
}
