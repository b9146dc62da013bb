// Running the real CLI as its own process, as an operator would.
import { spawn } from "node:child_process";

/** `node` arguments that run the CLI from source. */
export const CLI = ["--import", "tsx", "clients/cli/main.ts"];

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without anything that would point the CLI elsewhere, plus `extra`. */
export function cleanCliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.AUDIT_LEDGER_URL;
  delete env.AUDIT_LEDGER_API_KEY;
  delete env.DATABASE_URL;
  return { ...env, ...extra };
}

/** Runs the CLI to completion, with `stdin` piped in when given. */
export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...CLI, ...args], {
      env: cleanCliEnv(options.env),
      stdio: [options.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
    if (options.stdin !== undefined) child.stdin!.end(options.stdin);
  });
}
