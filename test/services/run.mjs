#!/usr/bin/env node
// node test/services/run.mjs start|stop|status [kafka|mongo|sqs ...] [--fresh] [--json]
// Starts (reusing what already runs), stops or reports the suite's test services; with no
// names, all of them. Exit code: 0 done, 1 a start/stop failed, 2 usage, 3 (status) some
// service is not running.
import { NAMES, services } from "./index.mjs";

// This is our own process: the SDK's Node 20 deprecation notice is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const USAGE = `usage: node test/services/run.mjs start|stop|status [${NAMES.join("|")} ...] [--fresh] [--json]`;

const args = process.argv.slice(2);
const flags = new Set(args.filter((a) => a.startsWith("--")));
const [command, ...rest] = args.filter((a) => !a.startsWith("--"));
const names = rest.length ? rest : [...NAMES];
const unknownFlags = [...flags].filter((f) => !["--fresh", "--json"].includes(f));
if (!["start", "stop", "status"].includes(command ?? "") || names.some((n) => !NAMES.includes(n)) || unknownFlags.length) {
  console.error(USAGE);
  process.exit(2);
}
const json = flags.has("--json");

function line(name, text) {
  console.log(`${name.padEnd(5)} ${text}`);
}

let failed = false;
const results = {};
for (const name of names) {
  const t0 = Date.now();
  try {
    if (command === "start") {
      const h = await services[name].start({ fresh: flags.has("--fresh") });
      const { stop: _stop, ...info } = h;
      results[name] = info;
      const how = h.external ? "external" : h.started ? `started (pid ${h.pid})` : `already running (pid ${h.pid})`;
      const t = h.timings ? ` in ${(h.timings.totalMs / 1000).toFixed(1)} s${h.timings.downloaded ? " (jars downloaded)" : ""}` : "";
      line(name, `${how}${t}: ${h.url}`);
    } else if (command === "stop") {
      await services[name].stop();
      results[name] = { stopped: true, ms: Date.now() - t0 };
      line(name, `stopped (${Date.now() - t0} ms)`);
    } else {
      const s = await services[name].status();
      results[name] = s;
      if (!s.running) failed = true;
      line(name, s.running ? `running (pid ${s.pid}, RSS ${s.rssMiB ?? "?"} MiB): ${s.url}` : s.alive ? `pid ${s.pid} alive but ${s.url} does not answer` : "not running");
    }
  } catch (err) {
    failed = true;
    results[name] = { error: String(err?.message ?? err) };
    console.error(`${name}: ${command} failed: ${err?.message ?? err}`);
  }
}
if (json) console.log(JSON.stringify(results, null, 2));
process.exit(failed ? (command === "status" ? 3 : 1) : 0);
