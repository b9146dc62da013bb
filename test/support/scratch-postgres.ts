// A throwaway Postgres cluster of a test's own, for tests that stop and restart the
// database (the shared cluster at PGHOST:PGPORT must never be restarted: other test
// files use it). initdb into a temp folder, trust auth, the unix socket in that folder,
// TCP on 127.0.0.1 at a free port. Postgres refuses to run as root, so as root the
// cluster belongs to, and its tools run as, the `postgres` user (runuser, else su).
// Nothing here skips: a machine that cannot run a cluster fails the test, saying why.
import { execFile } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./agent-process.js";

export interface ScratchPostgres {
  host: string;
  port: number;
  /** Folder holding the cluster (data/), its socket and its log. */
  dir: string;
  /** Connection URL of `database` as the superuser `postgres`. */
  url(database?: string): string;
  /** `pg_ctl restart -m fast -w`: open sessions are cut, the server is back when this resolves. */
  restart(): Promise<void>;
  /** `pg_ctl stop -m fast -w`. */
  stop(): Promise<void>;
  /** `pg_ctl start -w` after stop(). */
  start(): Promise<void>;
  /** Stops the cluster (immediate) and removes its folder; safe to call twice. */
  destroy(): Promise<void>;
  /** The cluster's own log. */
  log(): string;
}

function exec(file: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.join(" ")} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** The folder holding initdb and pg_ctl: pg_config's, else the newest /usr/lib/postgresql/<v>/bin. */
async function findBinDir(): Promise<string> {
  const tried: string[] = [];
  const has = (dir: string) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"));
  try {
    const dir = (await exec("pg_config", ["--bindir"], tmpdir())).stdout.trim();
    if (has(dir)) return dir;
    tried.push(`${dir} (pg_config --bindir)`);
  } catch (err) {
    tried.push(`pg_config: ${(err as Error).message.split("\n")[0]}`);
  }
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) {
    const dir = join(base, v, "bin");
    if (has(dir)) return dir;
    tried.push(dir);
  }
  throw new Error(`no initdb/pg_ctl found to run a scratch Postgres cluster (tried: ${tried.join("; ") || "nothing"}); install the PostgreSQL server package`);
}

/** How to run the cluster's tools: directly, or as `postgres` when we are root. */
async function runner(dir: string): Promise<(tool: string, args: string[]) => Promise<{ stdout: string; stderr: string }>> {
  if (process.getuid?.() !== 0) return (tool, args) => exec(tool, args, dir);
  let uid: number;
  let gid: number;
  try {
    uid = Number((await exec("id", ["-u", "postgres"], dir)).stdout.trim());
    gid = Number((await exec("id", ["-g", "postgres"], dir)).stdout.trim());
  } catch (err) {
    throw new Error(`running as root, and Postgres refuses root: a "postgres" user is needed to own the scratch cluster (${(err as Error).message.split("\n")[0]})`);
  }
  chownSync(dir, uid, gid);
  const runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].find(existsSync);
  if (runuser) return (tool, args) => exec(runuser, ["-u", "postgres", "--", tool, ...args], dir);
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return (tool, args) => exec("su", ["postgres", "-s", "/bin/sh", "-c", [tool, ...args].map(quote).join(" ")], dir);
}

/**
 * Starts a cluster of its own. `settings` are extra server settings (`-c name=value`),
 * e.g. `{ wal_level: "logical" }` for a logical replication source.
 */
export async function startScratchPostgres(settings: Record<string, string | number> = {}): Promise<ScratchPostgres> {
  const bin = await findBinDir();
  const dir = mkdtempSync(join(tmpdir(), "al-scratch-pg-"));
  const data = join(dir, "data");
  const logFile = join(dir, "postgres.log");
  const host = "127.0.0.1";
  let destroyed = false;
  let stopOnFailure = async () => {};
  try {
    const as = await runner(dir);
    await as(join(bin, "initdb"), ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    const port = await freePort();
    // The socket goes in our folder: the system's /var/run/postgresql may not be writable.
    const extra = Object.entries(settings).map(([k, v]) => ` -c ${k}=${v}`).join("");
    const opts = `-p ${port} -k ${dir} -c listen_addresses=${host}${extra}`;
    const pgCtl = (...args: string[]) => as(join(bin, "pg_ctl"), ["-D", data, "-l", logFile, "-t", "60", ...args]);
    await pgCtl("-w", "-o", opts, "start");
    stopOnFailure = async () => void (await pgCtl("-w", "-m", "immediate", "stop").catch(() => undefined));
    const url = (database = "postgres") => `postgres://postgres@${host}:${port}/${database}`;
    // Up and answering (pg_ctl -w waits for that too; this also proves TCP works).
    const probe = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 5000 });
    await probe.connect();
    await probe.end();
    return {
      host,
      port,
      dir,
      url,
      restart: async () => void (await pgCtl("-w", "-m", "fast", "-o", opts, "restart")),
      stop: async () => void (await pgCtl("-w", "-m", "fast", "stop")),
      start: async () => void (await pgCtl("-w", "-o", opts, "start")),
      async destroy() {
        if (destroyed) return;
        destroyed = true;
        await pgCtl("-w", "-m", "immediate", "stop").catch(() => undefined);
        rmSync(dir, { recursive: true, force: true });
      },
      log: () => {
        try {
          return readFileSync(logFile, "utf8");
        } catch {
          return "";
        }
      },
    };
  } catch (err) {
    await stopOnFailure();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
