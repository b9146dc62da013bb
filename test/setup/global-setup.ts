// Once per `npm test`: Postgres up, a fresh database for this run, migrations applied;
// then the upstream services the source tests read from (issue 5): a second Postgres
// cluster with wal_level=logical, Kafka, a MongoDB-compatible server and an SQS
// endpoint, all on loopback, started by the project's own scripts (test/services/).
// A service that cannot be had fails the run, saying why: no test skips for it.
// Test files share the ledger database and keep apart by using chains of their own.
import type { TestProject } from "vitest/node";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:net";
import { join } from "node:path";
import { adminUrl, createDatabase, dropDatabase, ensurePostgres } from "./postgres.js";
import { PostgresDatabase } from "../../server/storage/postgres-database.js";
import { migrate } from "../../server/storage/migrate.js";
import { startScratchPostgres, type ScratchPostgres } from "../support/scratch-postgres.js";
import { startAll } from "../services/index.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    /** The run's checkpoint signing keys, shared by every server (as replicas share theirs). */
    keysDir: string;
    /** Superuser URL (database `postgres`) of the source cluster: wal_level=logical, its own port. */
    pgLogicalUrl: string;
    /** Kafka bootstrap brokers, `host:port`. */
    kafkaBrokers: string[];
    /** mongodb:// URL of the MongoDB-compatible test server. */
    mongoUrl: string;
    /** SQS endpoint URL (ElasticMQ), with its region and static credentials. */
    sqs: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await ensurePostgres();
  const name = `audit_ledger_test_${Date.now()}_${process.pid}`;
  await createDatabase(name);
  const url = adminUrl(name);
  const db = new PostgresDatabase({ connectionString: url, max: 1 });
  await migrate(db);
  await db.close();
  project.provide("databaseUrl", url);
  const keysDir = mkdtempSync(join(tmpdir(), "audit-ledger-test-keys-"));
  project.provide("keysDir", keysDir);

  let logical: ScratchPostgres | undefined;
  let upstream: Awaited<ReturnType<typeof startAll>> | undefined;
  const teardown = async () => {
    await Promise.all(Object.values(upstream ?? {}).map((h) => h.stop().catch((err: Error) => process.stderr.write(`stopping ${h.name}: ${err.message}\n`))));
    await logical?.destroy();
    rmSync(keysDir, { recursive: true, force: true });
    if (process.env.KEEP_TEST_DATABASE !== "true") await dropDatabase(name);
  };
  try {
    // Redis and Mosquitto are the machine's own services (the suite does not install them).
    await reachable("Redis", 6379, "redis-server");
    await reachable("Mosquitto", 1883, "mosquitto");
    logical = await startScratchPostgres({ wal_level: "logical", max_replication_slots: 40, max_wal_senders: 40, wal_sender_timeout: "10s" });
    project.provide("pgLogicalUrl", logical.url());
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
    upstream = await startAll(["kafka", "mongo", "sqs"]);
    project.provide("kafkaBrokers", upstream.kafka.brokers);
    project.provide("mongoUrl", upstream.mongo.url);
    const { sqs } = upstream;
    project.provide("sqs", { endpoint: sqs.endpoint, region: sqs.region, ...sqs.credentials });
  } catch (err) {
    await teardown().catch(() => undefined);
    throw new Error(`the source tests' upstream services could not be started (test/services/README.md): ${(err as Error).message}`);
  }
  return teardown;
}

/** Fails, saying what to start, when nothing accepts TCP connections on 127.0.0.1:`port`. */
function reachable(name: string, port: number, start: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, timeout: 3000 });
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`${name} is not reachable at 127.0.0.1:${port} (${why}); the source tests need it running (e.g. \`${start}\`)`));
    };
    socket.once("connect", () => {
      socket.end();
      resolve();
    });
    socket.once("timeout", () => fail("no answer within 3 s"));
    socket.once("error", (err) => fail(err.message));
  });
}
