// Run by outbox-crash.test.ts as its own process, to be killed with SIGKILL mid-run:
// `node --import tsx agent/outbox/crash-child.ts DIR`. Two workers append batches
// concurrently (per-batch fsync); after each append resolves, the child prints
// `appended FIRST LAST TAG` (record i of the batch has body `TAG/i`), and after each ack
// resolves, `acked SEQ`. Whatever it printed, the outbox must still hold after the kill.
import { pathToFileURL } from "node:url";
import { openOutbox } from "./index.js";

const BATCH = 10;
const BODY_BYTES = 100;

export function crashBody(tag: string, i: number): Uint8Array {
  const out = new Uint8Array(BODY_BYTES).fill(0x20);
  out.set(new TextEncoder().encode(`${tag}/${i}`));
  return out;
}

async function worker(name: string, outbox: Awaited<ReturnType<typeof openOutbox>>["outbox"]): Promise<never> {
  for (let batchNo = 0; ; batchNo++) {
    const tag = `${process.pid}-${name}-${batchNo}`;
    const { firstSeq, lastSeq } = await outbox.append(Array.from({ length: BATCH }, (_, i) => crashBody(tag, i)));
    process.stdout.write(`appended ${firstSeq} ${lastSeq} ${tag}\n`);
    // Acks trail the appends, as the server's would.
    if (name === "a" && batchNo % 10 === 9 && lastSeq - 1500 >= outbox.firstUnacked) {
      await outbox.ack(lastSeq - 1500);
      process.stdout.write(`acked ${lastSeq - 1500}\n`);
    }
  }
}

// Only when run as the program, not when the test imports crashBody.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { outbox, report } = await openOutbox(process.argv[2]!, { fsync: "per-batch", segmentBytes: 16 * 1024 });
  process.stdout.write(`opened ${report.firstUnacked} ${report.nextSeq}\n`);
  await Promise.all([worker("a", outbox), worker("b", outbox)]);
}
