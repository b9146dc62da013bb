// Agent daemons and ledger servers as real child processes, for fault tests: SIGKILL is
// a real crash (no shutdown code runs), and a server can come back on the same port.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLI, cleanCliEnv } from "./cli-process.js";
export { freePort } from "./free-port.js";
import type { ServerProcess } from "./test-server.js";


/** One line of a child's pino output, parsed; `msg` and `level` always present. */
export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

interface Child {
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  lines(): LogLine[];
}

function run(args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [...CLI, ...args], { env: cleanCliEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let partial = "";
  const lines: LogLine[] = [];
  child.stdout!.on("data", (c: Buffer) => {
    const text = c.toString();
    out += text;
    partial += text;
    const cut = partial.lastIndexOf("\n");
    if (cut < 0) return;
    for (const line of partial.slice(0, cut).split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
    partial = partial.slice(cut + 1);
  });
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  // "close" comes after the output streams are drained, so output() is complete then.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  return { child, exited, output: () => out, lines: () => lines };
}

/** Resolves when `ready` matches a log line; rejects if the process exits first. */
function whenLogged(c: Child, ready: (l: LogLine) => boolean, what: string, timeoutMs: number, since = 0): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearInterval(poll);
      clearTimeout(timer);
      fn();
    };
    const check = () => {
      const lines = c.lines();
      let hit: LogLine | undefined;
      for (let i = since; i < lines.length && !hit; i++) if (ready(lines[i]!)) hit = lines[i];
      if (hit) done(() => resolve(hit));
    };
    const poll = setInterval(check, 20);
    const timer = setTimeout(() => done(() => reject(new Error(`${what}: not logged within ${timeoutMs} ms; output:\n${c.output().slice(-4000)}`))), timeoutMs);
    void c.exited.then((code) => {
      check();
      done(() => reject(new Error(`${what}: process exited with ${code} first; output:\n${c.output().slice(-4000)}`)));
    });
    check();
  });
}

export interface AgentProcess {
  child: ChildProcess;
  /** Everything the agent printed so far. */
  output(): string;
  /** Its JSON log lines so far. */
  lines(): LogLine[];
  /** Resolves with the first log line from index `since` on (printed already or to come) that matches. */
  waitForLog(match: (l: LogLine) => boolean, what: string, timeoutMs?: number, since?: number): Promise<LogLine>;
  /** The process has exited (with its exit code). */
  exited: Promise<number | null>;
  /** SIGKILL, then wait for the exit: a crash, nothing of the agent's shutdown runs. */
  kill(): Promise<void>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
}

/** Runs `audit-ledger agent --config FILE` and resolves once it logs "agent running". */
export async function spawnAgent(configFile: string, env: NodeJS.ProcessEnv = {}): Promise<AgentProcess> {
  const c = run(["agent", "--config", configFile], { LOG_LEVEL: "info", ...env });
  const agent: AgentProcess = {
    child: c.child,
    output: c.output,
    lines: c.lines,
    exited: c.exited,
    waitForLog: (match, what, timeoutMs = 15_000, since = 0) => whenLogged(c, match, what, timeoutMs, since),
    async kill() {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
      await c.exited;
    },
    async stop() {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGTERM");
      return c.exited;
    },
  };
  try {
    await agent.waitForLog((l) => l.msg === "agent running", "agent start", 30_000);
  } catch (err) {
    await agent.kill();
    throw err;
  }
  return agent;
}

/**
 * Runs `audit-ledger agent --config FILE` expecting it to fail at start: resolves with its
 * exit code and output once it exits; rejects if it logs "agent running" instead.
 */
export async function agentStartFailure(configFile: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number | null; output: string }> {
  const c = run(["agent", "--config", configFile], { LOG_LEVEL: "info", ...env });
  const timer = setTimeout(() => c.child.kill("SIGKILL"), timeoutMs);
  const running = setInterval(() => {
    if (c.lines().some((l) => l.msg === "agent running")) c.child.kill("SIGKILL");
  }, 50);
  try {
    const code = await c.exited;
    if (c.lines().some((l) => l.msg === "agent running")) throw new Error(`the agent started although its configuration is bad; output:\n${c.output().slice(-3000)}`);
    if (code === null) throw new Error(`the agent neither started nor failed within ${timeoutMs} ms; output:\n${c.output().slice(-3000)}`);
    return { code, output: c.output() };
  } finally {
    clearTimeout(timer);
    clearInterval(running);
  }
}

/** The agent configuration document (agent/daemon/agent-config.ts). */
export interface AgentConfigDoc {
  server: string;
  state_dir: string;
  enrolment_token?: string;
  name?: string;
  outbox?: { max_bytes?: number; segment_bytes?: number; fsync?: "per-batch" | "interval" | "none" };
  ingest?: { max_batch_events?: number; max_batch_bytes?: number; heartbeat_interval_ms?: number; max_backoff_ms?: number };
  sources: ({ name: string; type: string } & Record<string, unknown>)[];
}

/** Writes `doc` as `<dir>/agent.json` and returns the file's path. */
export function writeAgentConfig(dir: string, doc: AgentConfigDoc): string {
  const file = join(dir, "agent.json");
  writeFileSync(file, JSON.stringify(doc, null, 2));
  return file;
}

/**
 * Runs `audit-ledger serve` on a fixed port (spawnServer always takes a fresh one), so a
 * server can be killed and brought back where its agents expect it.
 */
export async function serverProcess(o: { port: number; databaseUrl: string; keysDir: string; env?: Record<string, string> }): Promise<ServerProcess> {
  const c = run(["serve", "--port", String(o.port)], {
    DATABASE_URL: o.databaseUrl,
    KEYS_DIR: o.keysDir,
    BOOTSTRAP_ADMIN_KEY: "false",
    LOG_LEVEL: "info",
    ...o.env,
  });
  let listening: LogLine;
  try {
    listening = await whenLogged(c, (l) => l.msg.startsWith("listening") && typeof l.url === "string", `server on port ${o.port}`, 30_000);
  } catch (err) {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    await c.exited;
    throw err;
  }
  const url = listening.url as string;
  return {
    url,
    port: Number(new URL(url).port),
    child: c.child,
    output: c.output,
    async stop() {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGTERM");
      return c.exited;
    },
    async kill() {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
      await c.exited;
    },
  };
}
