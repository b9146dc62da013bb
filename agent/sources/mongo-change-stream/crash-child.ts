// A process for mongo-change-stream.test.ts to kill -9: runs the source with a sink that
// writes each event to a file (one JSON line, fsync'ed) as the agent does with its outbox,
// then, in mode "ack", acknowledges it and writes {"acked": position} once that resolved.
//   node --import tsx agent/sources/mongo-change-stream/crash-child.ts CONFIG_JSON STATE_DIR OUT_FILE ack|hold
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import type { SourceEvent } from "../source.js";
import mongoChangeStreamSource from "./index.js";

const [configJson, stateDir, outFile, mode] = process.argv.slice(2);
if (!configJson || !stateDir || !outFile || (mode !== "ack" && mode !== "hold")) {
  process.stderr.write("usage: crash-child.ts CONFIG_JSON STATE_DIR OUT_FILE ack|hold\n");
  process.exit(2);
}

const out = openSync(outFile, "a");
const writeLine = (line: object) => {
  writeSync(out, `${JSON.stringify(line)}\n`);
  fsyncSync(out);
};
const log = { info: () => undefined, warn: () => undefined, error: (obj: object, msg: string) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`) };
const source = mongoChangeStreamSource.create(mongoChangeStreamSource.configSchema.parse(JSON.parse(configJson)), { name: "crash", stateDir, log });

await source.start({
  emit: async (events: SourceEvent[]) => {
    for (const e of events) writeLine({ position: e.position, kind: e.kind, subject: e.subject, payload: Buffer.from(e.payload ?? new Uint8Array()).toString("utf8") });
    if (mode === "hold") return;
    const last = events[events.length - 1]!.position;
    await source.acknowledge(last);
    writeLine({ acked: last });
  },
  gap: async (reason: string) => writeLine({ gap: reason }),
});
process.stdout.write("started\n");

process.on("SIGTERM", () => {
  void source.stop().then(() => {
    closeSync(out);
    process.exit(0);
  });
});
