// A process for kafka-consumer.test.ts to kill -9: runs the kafka_consumer source with a
// sink that writes each event to a file (one JSON line, fsync'ed) before acknowledging
// it, as the agent does with its outbox.
//   node --import tsx agent/sources/kafka-consumer/crash-child.ts CONFIG_JSON OUT_FILE
import { closeSync, fsyncSync, mkdtempSync, openSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SourceEvent } from "../source.js";
import kafkaConsumerSource from "./index.js";

const [configJson, outFile] = process.argv.slice(2);
if (!configJson || !outFile) {
  process.stderr.write("usage: crash-child.ts CONFIG_JSON OUT_FILE\n");
  process.exit(2);
}

const out = openSync(outFile, "a");
const log = { info: () => undefined, warn: () => undefined, error: (obj: object, msg: string) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`) };
const stateDir = mkdtempSync(join(tmpdir(), "kafka-crash-child-"));
const source = kafkaConsumerSource.create(kafkaConsumerSource.configSchema.parse(JSON.parse(configJson)), { name: "crash", stateDir, log });

await source.start({
  emit: async (events: SourceEvent[]) => {
    for (const e of events) writeSync(out, `${JSON.stringify({ position: e.position, payload: Buffer.from(e.payload ?? new Uint8Array()).toString("utf8") })}\n`);
    fsyncSync(out);
    await source.acknowledge(events[events.length - 1]!.position);
  },
  gap: async (reason: string) => {
    writeSync(out, `${JSON.stringify({ gap: reason })}\n`);
    fsyncSync(out);
  },
});
process.stdout.write("started\n");

process.on("SIGTERM", () => {
  void source.stop().then(() => {
    closeSync(out);
    process.exit(0);
  });
});
