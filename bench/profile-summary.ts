// Where the server's time went in one measured window: a V8 CPU profile (written by
// --cpu-prof) folded into a few categories. Each sample goes to the first category, in
// the order below, that any frame of its stack belongs to, so a socket write issued by
// the pg driver counts as "pg driver", not as streams, and hashing inside the
// sequencer counts as hashing.
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const CATEGORIES: [name: string, test: (f: CallFrame) => boolean][] = [
  ["garbage collection", (f) => f.functionName === "(garbage collector)"],
  ["idle", (f) => f.functionName === "(idle)"],
  ["profiler", (f) => f.url === "node:inspector"],
  ["hashing: canonical JSON (RFC 8785)", (f) => /chain\/canonical-json/.test(f.url)],
  ["hashing: SHA-256 of entries and payloads, salts", (f) => /chain\/(sha256-node|payload-digest|hex)/.test(f.url) || /^random(FillSync|Bytes)$/.test(f.functionName)],
  ["building rows: pg array parameters", (f) => /pg\/lib\/utils/.test(f.url)],
  ["validating events (incl. JSON.parse of payloads)", (f) => /ledger\/validate-event/.test(f.url)],
  ["protobuf decode of requests", (f) => /@bufbuild\/protobuf\/dist\/esm\/from-binary/.test(f.url)],
  ["protobuf encode of responses (incl. toEntryMessage)", (f) => /@bufbuild\/protobuf\/dist\/esm\/(to-binary|create|wire)|rpc\/entry-message/.test(f.url)],
  ["gzip of responses", (f) => /node:zlib/.test(f.url)],
  ["pg driver: round trips (socket I/O), row parsing", (f) => /node_modules\/(pg|pg-protocol|pg-types|postgres-array|pg-pool|pg-copy-streams)\/|storage\/postgres-database/.test(f.url)],
  ["Verify: rows to entries, chain walk", (f) => /chain\/chain-walk|verify\/verify-range|ledger\/(entry-row|ledger-reader)/.test(f.url)],
  ["live tail", (f) => /server\/tail\//.test(f.url)],
  ["sequencer (its own code)", (f) => /ledger\/sequencer/.test(f.url)],
  // Handlers run inside the auth interceptor's frame: match them first.
  ["RPC handlers (their own code)", (f) => /server\/rpc\//.test(f.url)],
  ["auth", (f) => /server\/auth\//.test(f.url)],
  ["V8 internals ((program))", (f) => f.functionName === "(program)"],
  ["Connect + HTTP/2 (framework, streams, abort signals)", (f) => /@connectrpc|node:internal\/(http2|streams|abort_controller|event_target|per_context\/domexception|stream_base)|node:(net|http2)/.test(f.url)],
];

/** Category shares of busy time, largest first, and the busy and window seconds. */
export function summarizeProfile(file: string): { windowSeconds: number; busySeconds: number; shares: [string, number][] } {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const category = new Map<number, string>(); // memo per leaf node
  const totals = new Map<string, number>();
  let window = 0;
  profile.samples.forEach((leaf, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    window += dt;
    let cat = category.get(leaf);
    if (cat === undefined) {
      const stack: CallFrame[] = [];
      for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!.callFrame);
      cat = CATEGORIES.find(([, test]) => stack.some(test))?.[0] ?? "other";
      category.set(leaf, cat);
    }
    totals.set(cat, (totals.get(cat) ?? 0) + dt);
  });
  // Idle time, and the profiler's own work when it stops, are not the server's.
  window -= totals.get("profiler") ?? 0;
  const busy = window - (totals.get("idle") ?? 0);
  totals.delete("idle");
  totals.delete("profiler");
  const shares = [...totals].map(([k, t]): [string, number] => [k, t / busy]).sort((a, b) => b[1] - a[1]);
  return { windowSeconds: window / 1e6, busySeconds: busy / 1e6, shares };
}
