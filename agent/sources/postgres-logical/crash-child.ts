// A process for postgres-logical.test.ts to kill -9: runs the source with a sink that
// writes each event to a file (one JSON line, fsync'ed) before acknowledging it, as the
// agent does with its outbox.
//   node --import tsx agent/sources/postgres-logical/crash-child.ts CONFIG_JSON STATE_DIR OUT_FILE
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import type { SourceEvent } from "../source.js";
import postgresLogicalSource from "./index.js";

const [configJson, stateDir, outFile] = process.argv.slice(2);
if (!configJson || !stateDir || !outFile) {
  process.stderr.write("usage: crash-child.ts CONFIG_JSON STATE_DIR OUT_FILE\n");
  process.exit(2);
}

const out = openSync(outFile, "a");
const log = { info: () => undefined, warn: () => undefined, error: (obj: object, msg: string) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`) };
const source = postgresLogicalSource.create(postgresLogicalSource.configSchema.parse(JSON.parse(configJson)), { name: "crash", stateDir, log });

await source.start({
  emit: async (events: SourceEvent[]) => {
    for (const e of events) {
      const line = { position: e.position, subject: e.subject, payload: Buffer.from(e.payload ?? new Uint8Array()).toString("utf8") };
      writeSync(out, `${JSON.stringify(line)}\n`);
    }
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
