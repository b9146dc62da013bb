// The daemon's configuration file (YAML or JSON), validated before anything starts:
// every error names the field, e.g. `sources[1].paths: ...`, and unknown keys are
// errors, so a misspelt option never falls back to a default silently.
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { SOURCES } from "../sources/registry.js";

const SOURCE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const topLevelSchema = z
  .object({
    /** The ledger server, e.g. http://127.0.0.1:8080. */
    server: z.url({
      protocol: /^https?$/,
      error: (issue) => (issue.input === undefined ? "required: the ledger server's URL, e.g. http://127.0.0.1:8080" : "must be an http:// or https:// URL"),
    }),
    /** Identity, credential, outbox and source state live here (keep it private). */
    state_dir: z.string().min(1),
    /** Used on first start only; AUDIT_LEDGER_ENROLMENT_TOKEN works too. */
    enrolment_token: z.string().min(1).optional(),
    name: z.string().max(128).optional(),
    outbox: z
      .object({
        max_bytes: z.number().int().min(1 << 20).default(1 << 30),
        segment_bytes: z.number().int().min(64 << 10).default(16 << 20),
        fsync: z.enum(["per-batch", "interval", "none"]).default("per-batch"),
      })
      .strict()
      .prefault({}),
    ingest: z
      .object({
        max_batch_events: z.number().int().min(1).max(10_000).default(1000),
        max_batch_bytes: z.number().int().min(1024).default(4 << 20),
        heartbeat_interval_ms: z.number().int().min(100).default(10_000),
        max_backoff_ms: z.number().int().min(100).default(30_000),
      })
      .strict()
      .prefault({}),
    sources: z.array(z.looseObject({ name: z.string().regex(SOURCE_NAME, "1-64 of A-Z a-z 0-9 . _ -"), type: z.string() })).min(1, "list at least one source"),
  })
  .strict();

export interface ConfiguredSource {
  name: string;
  type: string;
  config: unknown;
}

export type AgentConfig = Omit<z.infer<typeof topLevelSchema>, "sources"> & { sources: ConfiguredSource[] };

export class AgentConfigError extends Error {
  override readonly name = "AgentConfigError";
}

function issues(error: z.ZodError, prefix: string): string[] {
  return error.issues.map((i) => {
    let path = prefix;
    for (const p of i.path) path += typeof p === "number" ? `[${p}]` : path ? `.${String(p)}` : String(p);
    return `${path || "(top level)"}: ${i.message}`;
  });
}

/** Validates a parsed config document; relative state_dir is taken from `baseDir`. */
export function validateAgentConfig(doc: unknown, baseDir = process.cwd()): AgentConfig {
  const top = topLevelSchema.safeParse(doc);
  if (!top.success) throw new AgentConfigError(issues(top.error, "").join("\n"));
  const problems: string[] = [];
  const names = new Set<string>();
  const sources: ConfiguredSource[] = [];
  top.data.sources.forEach((s, i) => {
    const { name, type, ...rest } = s;
    if (names.has(name)) problems.push(`sources[${i}].name: "${name}" is used by an earlier source`);
    names.add(name);
    const factory = SOURCES.get(type);
    if (!factory) {
      problems.push(`sources[${i}].type: unknown source type "${type}"; this agent runs ${[...SOURCES.keys()].join(", ")}`);
      return;
    }
    const parsed = factory.configSchema.safeParse(rest);
    if (!parsed.success) problems.push(...issues(parsed.error, `sources[${i}]`));
    else sources.push({ name, type, config: parsed.data });
  });
  if (problems.length > 0) throw new AgentConfigError(problems.join("\n"));
  const stateDir = isAbsolute(top.data.state_dir) ? top.data.state_dir : resolve(baseDir, top.data.state_dir);
  return { ...top.data, state_dir: stateDir, sources };
}

/** Reads FILE (.json as JSON, anything else as YAML, which includes JSON) and validates it. */
export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new AgentConfigError(`${file}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new AgentConfigError(`${file}: not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${(err as Error).message}`);
  }
  try {
    return validateAgentConfig(doc, dirname(resolve(file)));
  } catch (err) {
    if (err instanceof AgentConfigError) throw new AgentConfigError(`${file}:\n${err.message}`);
    throw err;
  }
}
