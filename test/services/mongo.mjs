// The suite's MongoDB-compatible server: de.bwaldvogel:mongo-java-server (in-memory backend)
// from Maven Central (mongo/pom.xml), started by mongo/TestMongoServer.java with the oplog
// enabled so change streams work, on 127.0.0.1. Nothing survives a restart (in memory).
//
// The wire version: mongo-java-server reports maxWireVersion 8 by default and mongodb driver
// 7.x refuses anything below 9 ("requires at least 9 (MongoDB 4.4)"). The server is told to
// report the lowest wire version the installed driver accepts (read from the driver), so the
// driver assumes as few server features as it can; TEST_MONGO_WIRE_VERSION overrides it.
//
// Env: TEST_MONGO_URL=mongodb://... uses a MongoDB run elsewhere (a real replica set);
// TEST_MONGO_PORT fixes the port; TEST_MONGO_HEAP overrides -Xms32m -Xmx256m.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { HERE, HOST, importClient, choosePort, compileJava, defineService, paths, resolveJars } from "./lib.mjs";

const NAME = "mongo";
const POM = join(HERE, "mongo", "pom.xml");
const SOURCE = join(HERE, "mongo", "TestMongoServer.java");
const MAIN = "TestMongoServer";

/** MongoDB release of each wire version (the ones a driver may ask for). */
const RELEASES = { 9: "4.4.0", 13: "5.0.0", 17: "6.0.0", 21: "7.0.0", 25: "8.0.0" };

/** The lowest wire version the installed `mongodb` driver accepts (9 if it cannot be read). */
export function driverMinWireVersion() {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve("mongodb");
    const constants = require(join(dirname(main), "cmap", "wire_protocol", "constants.js"));
    const min = Number(constants.MIN_SUPPORTED_WIRE_VERSION);
    if (Number.isInteger(min) && min > 0) return min;
  } catch {
    // driver missing or laid out differently: the driver 7.x minimum below
  }
  return 9;
}

function reportedVersion() {
  const wire = Number(process.env.TEST_MONGO_WIRE_VERSION ?? driverMinWireVersion());
  if (!Number.isInteger(wire) || wire < 0) throw new Error(`TEST_MONGO_WIRE_VERSION=${process.env.TEST_MONGO_WIRE_VERSION} is not a wire version`);
  const known = Object.keys(RELEASES).map(Number).filter((w) => w <= wire);
  const release = known.length ? RELEASES[Math.max(...known)] : "4.0.0";
  return { wire, release };
}

function describe(state) {
  return { host: HOST, port: state.port, url: `mongodb://${HOST}:${state.port}/`, wireVersion: state.wireVersion, serverVersion: state.serverVersion };
}

/** The driver connects (it checks the wire version) and the server answers a ping. */
async function healthy(state) {
  const { MongoClient } = await importClient("mongodb", NAME);
  const client = new MongoClient(state.url ?? describe(state).url, { serverSelectionTimeoutMS: 2000, connectTimeoutMS: 2000 });
  try {
    await client.connect();
    const res = await client.db("admin").command({ ping: 1 });
    return res.ok === 1;
  } catch (err) {
    // The driver refuses the server's wire version: waiting will not change that.
    if (/wire version/i.test(String(err?.message))) err.fatal = true;
    throw err;
  } finally {
    await client.close().catch(() => undefined);
  }
}

async function prepare(previous) {
  const p = paths(NAME);
  const downloaded = await resolveJars(NAME, POM);
  const { classes } = await compileJava(NAME, SOURCE, MAIN);
  const port = await choosePort("TEST_MONGO_PORT", previous?.port);
  const { wire, release } = reportedVersion();
  const heap = (process.env.TEST_MONGO_HEAP ?? "-Xms32m -Xmx256m").split(/\s+/).filter(Boolean);
  return {
    downloaded,
    state: { port, wireVersion: wire, serverVersion: release },
    args: [
      ...heap,
      "-XX:+UseSerialGC",
      "-XX:+ExitOnOutOfMemoryError",
      "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
      "-Dorg.slf4j.simpleLogger.showDateTime=true",
      "-cp",
      `${join(p.lib, "*")}:${classes}`,
      MAIN,
      HOST,
      String(port),
      String(wire),
      release,
    ],
  };
}

function external() {
  const url = process.env.TEST_MONGO_URL;
  if (!url) return undefined;
  return healthy({ url }).then(
    () => ({ name: NAME, url, started: false, external: true, async stop() {} }),
    (err) => {
      throw new Error(`TEST_MONGO_URL=${url} does not answer: ${err.message}`);
    },
  );
}

const service = defineService({ name: NAME, graceMs: 10_000, readyTimeoutMs: 60_000, prepare, healthy, describe, external });

/** Starts (or reuses) the Mongo test server. Resolves to { url, port, stop(), ... }. */
export const start = service.start;
/** Stops the Mongo test server whoever started it. */
export const stop = service.stop;
export const status = service.status;
