// The suite's Postgres: reachable at PGHOST/PGPORT (default 127.0.0.1:5432), started
// through the machine's cluster tools when it is not running. Never skipped: if
// Postgres cannot be had, the run fails with a message saying why.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";
import pg from "pg";

export const PG_HOST = process.env.PGHOST ?? "127.0.0.1";
export const PG_PORT = Number(process.env.PGPORT ?? 5432);
export const PG_USER = process.env.PGUSER ?? "postgres";

export function adminUrl(database = "postgres"): string {
  return `postgres://${PG_USER}@${PG_HOST}:${PG_PORT}/${database}`;
}

async function reachable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: adminUrl(), connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Makes sure Postgres answers, starting the local cluster if needed. */
export async function ensurePostgres(): Promise<void> {
  if (await reachable()) return;
  let versions: string[] = [];
  try {
    versions = readdirSync("/etc/postgresql");
  } catch {
    throw new Error(`PostgreSQL is not reachable at ${PG_HOST}:${PG_PORT} and no local cluster is installed (/etc/postgresql missing). Install PostgreSQL or set PGHOST/PGPORT.`);
  }
  for (const version of versions) {
    try {
      execFileSync("pg_ctlcluster", ["--skip-systemctl-redirect", version, "main", "start"], { stdio: "pipe" });
    } catch (err) {
      const msg = String((err as { stderr?: Buffer }).stderr ?? err);
      if (!/already running/.test(msg)) process.stderr.write(`pg_ctlcluster ${version} main start: ${msg}\n`);
    }
  }
  for (let i = 0; i < 50; i++) {
    if (await reachable()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`PostgreSQL did not become reachable at ${PG_HOST}:${PG_PORT} after starting cluster(s) ${versions.join(", ")}`);
}

export async function createDatabase(name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
}

export async function dropDatabase(name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}
