// A process for a source's kill -9 test: runs one source (loaded through the registry)
// with a sink that writes each event to a file (one JSON line, fsync'ed) before
// acknowledging it, as the agent does with its outbox. Started and read by
// source-crash-process.ts.
//   node --import tsx test/support/source-crash-child.ts SOURCE_TYPE CONFIG_JSON STATE_DIR OUT_FILE [ack|ack-logged|hold]
// Lines: {position, kind, subject, payload} per event (payload as utf8 text), {gap: reason}
// per gap, and in mode "ack-logged" {acked: position} once an acknowledge resolved. Mode
// "hold" never acknowledges. Prints "started" once start() resolved; SIGTERM stops the
// source and exits 0.
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { SOURCES } from "../../agent/sources/registry.js";
import type { SourceEvent } from "../../agent/sources/source.js";

const CRASH_CHILD_MODES = ["ack", "ack-logged", "hold"] as const;

const [type, configJson, stateDir, outFile, mode = "ack"] = process.argv.slice(2);
const registered = type === undefined ? undefined : SOURCES.get(type);
if (!registered || !configJson || !stateDir || !outFile || !(CRASH_CHILD_MODES as readonly string[]).includes(mode)) {
  process.stderr.write(`usage: source-crash-child.ts SOURCE_TYPE CONFIG_JSON STATE_DIR OUT_FILE [${CRASH_CHILD_MODES.join("|")}] (source types: ${[...SOURCES.keys()].join(", ")})\n`);
  process.exit(2);
}

const factory = await registered.load();
const out = openSync(outFile, "a");
const writeLines = (lines: object[]) => {
  for (const line of lines) writeSync(out, `${JSON.stringify(line)}\n`);
  fsyncSync(out);
};
const log = { info: () => undefined, warn: () => undefined, error: (obj: object, msg: string) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`) };
const source = factory.create(factory.configSchema.parse(JSON.parse(configJson)), { name: "crash", stateDir, log });

await source.start({
  emit: async (events: SourceEvent[]) => {
    writeLines(events.map((e) => ({ position: e.position, kind: e.kind, subject: e.subject, payload: Buffer.from(e.payload ?? new Uint8Array()).toString("utf8") })));
    if (mode === "hold") return;
    const last = events[events.length - 1]!.position;
    await source.acknowledge(last);
    if (mode === "ack-logged") writeLines([{ acked: last }]);
  },
  gap: async (reason: string) => writeLines([{ gap: reason }]),
});
process.stdout.write("started\n");

process.on("SIGTERM", () => {
  void source.stop().then(() => {
    closeSync(out);
    process.exit(0);
  });
});
