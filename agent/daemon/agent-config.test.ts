// The daemon's configuration file: YAML or JSON, validated before anything starts, every
// error naming the field it is about, unknown keys refused, state_dir taken relative to
// the file's own folder.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentConfigError, loadAgentConfig, validateAgentConfig } from "./agent-config.js";
import { SOURCES } from "../sources/registry.js";

const poller = (name = "items", extra: Record<string, unknown> = {}) => ({ name, type: "generic_polling", url: "http://127.0.0.1:9/items", ...extra });

const base = (extra: Record<string, unknown> = {}) => ({
  server: "http://127.0.0.1:8080",
  state_dir: "/var/lib/audit-ledger-agent",
  sources: [poller()],
  ...extra,
});

/** The AgentConfigError message `fn` throws (fails the test if it throws anything else, or nothing). */
function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AgentConfigError);
    return (err as Error).message;
  }
  throw new Error("expected an AgentConfigError, but the config was accepted");
}

const invalid = (doc: unknown) => errorOf(() => validateAgentConfig(doc, "/etc/agent"));

describe("validateAgentConfig", () => {
  it("accepts a minimal generic_polling config and fills in the defaults", () => {
    const c = validateAgentConfig(base(), "/etc/agent");
    expect(c.server).toBe("http://127.0.0.1:8080");
    expect(c.state_dir).toBe("/var/lib/audit-ledger-agent");
    expect(c.outbox).toEqual({ max_bytes: 1 << 30, segment_bytes: 16 << 20, fsync: "per-batch" });
    expect(c.ingest).toMatchObject({ max_batch_events: 1000, heartbeat_interval_ms: 10_000 });
    expect(c.sources).toHaveLength(1);
    expect(c.sources[0]).toMatchObject({ name: "items", type: "generic_polling" });
    // The source's own schema ran: its defaults are in, name and type are not.
    expect(c.sources[0]!.config).toMatchObject({ url: "http://127.0.0.1:9/items", interval_ms: 60_000, kind_prefix: "item" });
    expect(c.sources[0]!.config).not.toHaveProperty("name");
    expect(c.sources[0]!.config).not.toHaveProperty("type");
  });

  it("accepts every option set explicitly, and several sources", () => {
    const c = validateAgentConfig(
      base({
        enrolment_token: "ale_x.y",
        name: "edge-1",
        outbox: { max_bytes: 2 << 20, segment_bytes: 1 << 20, fsync: "none" },
        ingest: { max_batch_events: 10, max_batch_bytes: 4096, heartbeat_interval_ms: 200, max_backoff_ms: 1000 },
        sources: [poller("a", { interval_ms: 500, id_field: "id", items_path: "data.items", headers: { Authorization: "Bearer t" } }), poller("b")],
      }),
    );
    expect(c.name).toBe("edge-1");
    expect(c.outbox.fsync).toBe("none");
    expect(c.ingest.max_batch_events).toBe(10);
    expect(c.sources.map((s) => s.name)).toEqual(["a", "b"]);
    expect(c.sources[0]!.config).toMatchObject({ interval_ms: 500, id_field: "id", items_path: "data.items" });
  });

  it("accepts a filesystem_watch source next to a generic_polling one", () => {
    const c = validateAgentConfig(base({ sources: [poller(), { name: "etc", type: "filesystem_watch", paths: ["/etc/ssh"], ignore: ["*.tmp"] }] }));
    expect(c.sources.map((s) => s.type)).toEqual(["generic_polling", "filesystem_watch"]);
    expect(c.sources[1]!.config).toMatchObject({ paths: ["/etc/ssh"], ignore: ["*.tmp"] });
    expect(invalid(base({ sources: [{ name: "etc", type: "filesystem_watch", paths: [] }] }))).toMatch(/^sources\[0\]\.paths: /m);
  });

  it("a missing server, or one that is not an http(s) URL, names `server`", () => {
    const { server: _, ...noServer } = base();
    expect(invalid(noServer)).toMatch(/^server: required/m);
    expect(invalid(base({ server: "not a url" }))).toMatch(/^server: must be an http:\/\/ or https:\/\/ URL/m);
    expect(invalid(base({ server: "ftp://127.0.0.1:8080" }))).toMatch(/^server: must be an http/m);
    expect(invalid(base({ server: 8080 }))).toMatch(/^server: /m);
  });

  it("a missing state_dir names `state_dir`; a wrong type inside a section names its path", () => {
    const { state_dir: _, ...noState } = base();
    expect(invalid(noState)).toMatch(/^state_dir: /m);
    expect(invalid(base({ outbox: { fsync: "always" } }))).toMatch(/^outbox\.fsync: /m);
    expect(invalid(base({ ingest: { max_batch_events: 0 } }))).toMatch(/^ingest\.max_batch_events: /m);
  });

  it("an unknown top-level key (or section key) is an error that names it", () => {
    const top = invalid(base({ sever: "http://x" }));
    expect(top).toMatch(/sever/);
    expect(top).toMatch(/unrecognized/i);
    expect(invalid(base({ outbox: { fsynk: "none" } }))).toMatch(/^outbox: .*fsynk/m);
  });

  it("a document that is not an object is refused", () => {
    expect(invalid(null)).toMatch(/expected object/i);
    expect(invalid("server: x")).toMatch(/expected object/i);
    expect(invalid([base()])).toMatch(/expected object/i);
  });

  it("empty or missing sources name `sources`", () => {
    expect(invalid(base({ sources: [] }))).toMatch(/^sources: list at least one source/m);
    const { sources: _, ...noSources } = base();
    expect(invalid(noSources)).toMatch(/^sources: /m);
    expect(invalid(base({ sources: "items" }))).toMatch(/^sources: /m);
  });

  it("an unknown source type names `sources[i].type` and lists the known ones", () => {
    const msg = invalid(base({ sources: [{ name: "k", type: "kafka_consumr", brokers: ["x"] }] }));
    expect(msg).toMatch(/^sources\[0\]\.type: unknown source type "kafka_consumr"/m);
    expect(msg).toContain("generic_polling");
    expect(invalid(base({ sources: [{ name: "k" }] }))).toMatch(/^sources\[0\]\.type: /m);
  });

  it("source names: duplicates and bad names are errors naming `sources[i].name`", () => {
    expect(invalid(base({ sources: [poller("a"), poller("b"), poller("a")] }))).toMatch(/^sources\[2\]\.name: "a" is used by an earlier source/m);
    expect(invalid(base({ sources: [poller("has space")] }))).toMatch(/^sources\[0\]\.name: /m);
    expect(invalid(base({ sources: [{ type: "generic_polling", url: "http://x/" }] }))).toMatch(/^sources\[0\]\.name: /m);
  });

  it("a bad source option names `sources[i].<option>`", () => {
    expect(invalid(base({ sources: [poller("a"), poller("b", { url: "not a url" })] }))).toMatch(/^sources\[1\]\.url: /m);
    expect(invalid(base({ sources: [poller("a"), poller("b", { url: "file:///etc/passwd" })] }))).toMatch(/^sources\[1\]\.url: .*http/m);
    expect(invalid(base({ sources: [poller("a", { interval_ms: 5 })] }))).toMatch(/^sources\[0\]\.interval_ms: /m);
    const { url: _, ...noUrl } = poller("a");
    expect(invalid(base({ sources: [noUrl] }))).toMatch(/^sources\[0\]\.url: /m);
  });

  it("an unknown source option is an error naming the source and the key", () => {
    const msg = invalid(base({ sources: [poller("a", { intervall_ms: 500 })] }));
    expect(msg).toMatch(/^sources\[0\]/m);
    expect(msg).toContain("intervall_ms");
  });

  it("reports every problem at once, one per line", () => {
    const msg = invalid(base({ sources: [poller("a", { url: "nope" }), { name: "b", type: "nope" }, poller("a")] }));
    const lines = msg.split("\n");
    expect(lines.some((l) => l.startsWith("sources[0].url: "))).toBe(true);
    expect(lines.some((l) => l.startsWith("sources[1].type: "))).toBe(true);
    expect(lines.some((l) => l.startsWith("sources[2].name: "))).toBe(true);
  });

  it("a relative state_dir is taken from the base folder; an absolute one is kept", () => {
    expect(validateAgentConfig(base({ state_dir: "state" }), "/etc/agent").state_dir).toBe("/etc/agent/state");
    expect(validateAgentConfig(base({ state_dir: "../var/agent" }), "/etc/agent").state_dir).toBe("/etc/var/agent");
    expect(validateAgentConfig(base({ state_dir: "/srv/agent" }), "/etc/agent").state_dir).toBe("/srv/agent");
  });
});

describe("loadAgentConfig", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "al-agent-config-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string) => {
    const file = join(dir, name);
    mkdirSync(join(file, ".."), { recursive: true });
    writeFileSync(file, text);
    return file;
  };
  const loadError = (file: string) => errorOf(() => loadAgentConfig(file));

  it("reads YAML, with state_dir relative to the config file's folder (not the working folder)", () => {
    const file = write(
      "conf/agent.yaml",
      [
        "# an agent next to the orders API",
        "server: https://ledger.example.com",
        "state_dir: ./state",
        "name: orders-edge",
        "ingest:",
        "  max_batch_events: 50",
        "sources:",
        "  - name: orders",
        "    type: generic_polling",
        "    url: http://127.0.0.1:9/orders",
        "    interval_ms: 1000",
        "    id_field: id",
        "",
      ].join("\n"),
    );
    const c = loadAgentConfig(file);
    expect(c.server).toBe("https://ledger.example.com");
    expect(c.state_dir).toBe(join(dir, "conf", "state"));
    expect(c.name).toBe("orders-edge");
    expect(c.ingest.max_batch_events).toBe(50);
    expect(c.sources[0]).toMatchObject({ name: "orders", type: "generic_polling", config: { interval_ms: 1000, id_field: "id" } });
  });

  it("reads JSON (.json), and JSON in a .yml file too", () => {
    const doc = { server: "http://127.0.0.1:8080", state_dir: "s", sources: [poller()] };
    const json = write("j/agent.json", JSON.stringify(doc, null, 2));
    expect(loadAgentConfig(json).state_dir).toBe(join(dir, "j", "s"));
    const yml = write("y/agent.yml", JSON.stringify(doc));
    expect(loadAgentConfig(yml).sources[0]!.name).toBe("items");
  });

  it("invalid YAML says YAML and names the file", () => {
    const file = write("bad.yaml", "server: http://127.0.0.1:8080\nsources:\n  - name: a\n   type: generic_polling\n  bad: [\n");
    const msg = loadError(file);
    expect(msg).toContain(file);
    expect(msg).toMatch(/not valid YAML/);
  });

  it("invalid JSON in a .json file says JSON", () => {
    const file = write("bad.json", '{"server": "http://127.0.0.1:8080",');
    const msg = loadError(file);
    expect(msg).toContain(file);
    expect(msg).toMatch(/not valid JSON/);
  });

  it("a missing file names the file", () => {
    const file = join(dir, "nope", "agent.yaml");
    const msg = loadError(file);
    expect(msg).toContain(file);
    expect(msg).toMatch(/ENOENT|no such file/);
  });

  it("an empty file is refused, not taken as an empty config", () => {
    expect(loadError(write("empty.yaml", ""))).toMatch(/expected object/i);
  });

  it("validation errors from a file name the file and the field", () => {
    const file = write("fields.yaml", "server: http://127.0.0.1:8080\nstate_dir: s\nsources:\n  - name: a\n    type: generic_polling\n    url: http://x/\n  - name: b\n    type: generic_polling\n    url: nope\n");
    const msg = loadError(file);
    expect(msg.split("\n")[0]).toBe(`${file}:`);
    expect(msg).toMatch(/^sources\[1\]\.url: /m);
  });
});

describe("the source registry", () => {
  it("each entry's type and config schema are its factory's own", async () => {
    for (const [type, entry] of SOURCES) {
      const factory = await entry.load();
      expect(factory.type).toBe(type);
      expect(factory.configSchema).toBe(entry.configSchema);
    }
  });
});
