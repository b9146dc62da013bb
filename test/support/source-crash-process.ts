// The parent side of a source's kill -9 test: starts source-crash-child.ts (one source
// writing each event as an fsync'ed JSON line before acknowledging it) and reads back
// what it wrote.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const CHILD = fileURLToPath(new URL("./source-crash-child.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** What the child does after storing a batch (see source-crash-child.ts). */
export type CrashChildMode = "ack" | "ack-logged" | "hold";

/**
 * Starts a child running source `type` with `config`; resolves once the source started,
 * rejects with the child's stderr if it exits first. With `cleanups`, registers a
 * SIGKILL of the child if it is still running then.
 */
export function startCrashChild(
  type: string,
  config: unknown,
  stateDir: string,
  outFile: string,
  mode: CrashChildMode = "ack",
  cleanups?: (() => unknown)[],
): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, type, JSON.stringify(config), stateDir, outFile, mode], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  cleanups?.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let stdout = "";
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes("started")) resolve(child);
    });
    child.once("exit", (code, signal) => reject(new Error(`crash child exited (${code ?? signal}) before starting: ${stderr}`)));
  });
}

/** The JSON lines a crash child wrote to `file`, parsed; a torn last line is left out. */
export function readCrashLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return []; // a torn last line
      }
    });
}
