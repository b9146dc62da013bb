// Shared machinery of the suite's test services (kafka.mjs, mongo.mjs, sqs.mjs): where their
// files live, Java and Maven checks, jar resolution with `mvn dependency:copy-dependencies`,
// free ports, detached JVMs with a pid and a log file, a state file per service so a running
// instance is reused, a lock so two starts never race, and stop. Everything is bounded in
// time and fails with a message that says what is missing.
import { execFile, execFileSync, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(HERE, "..", "..");
/** Where jars, data, logs and state go: .data/services/<name>/ (gitignored). */
export const SERVICES_DIR = resolve(process.env.TEST_SERVICES_DIR ?? join(REPO_ROOT, ".data", "services"));
export const HOST = "127.0.0.1";

const MAVEN_TIMEOUT_MS = Number(process.env.TEST_SERVICES_MAVEN_TIMEOUT_MS ?? 10 * 60_000);
const LOCK_TIMEOUT_MS = MAVEN_TIMEOUT_MS + 5 * 60_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function serviceDir(name) {
  const dir = join(SERVICES_DIR, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** The service's files: lib/ (jars), data/, <name>.log, <name>.pid, state.json. */
export function paths(name) {
  const dir = serviceDir(name);
  return {
    dir,
    lib: join(dir, "lib"),
    data: join(dir, "data"),
    log: join(dir, `${name}.log`),
    pidFile: join(dir, `${name}.pid`),
    state: join(dir, "state.json"),
    lock: join(dir, "lock"),
  };
}

function firstLine(err) {
  return String(err?.message ?? err).split("\n")[0];
}

function tail(text, lines = 40) {
  return text.split("\n").slice(-lines).join("\n");
}

export function logTail(name, lines = 40) {
  try {
    return tail(readFileSync(paths(name).log, "utf8"), lines);
  } catch {
    return "(no log)";
  }
}

// ---------------------------------------------------------------- tools

let javaChecked = false;
/** Java 17+ on PATH (or JAVA_HOME), else a clear error. Returns the java executable. */
export function javaBin() {
  const java = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, "bin", "java") : "java";
  if (javaChecked) return java;
  // `java -version` prints on stderr.
  const r = spawnSync(java, ["-version"], { encoding: "utf8", timeout: 30_000 });
  if (r.error?.code === "ENOENT") {
    throw new Error(`Java is missing: '${java}' not found. The test services (Kafka, mongo-java-server, ElasticMQ) need Java 17+: apt-get install openjdk-17-jdk-headless (or set JAVA_HOME).`);
  }
  const text = `${r.stderr ?? ""}${r.stdout ?? ""}`;
  if (r.error || r.status !== 0) throw new Error(`'${java} -version' failed: ${r.error ? firstLine(r.error) : text.trim()}`);
  const m = /version "(\d+)(?:\.(\d+))?/.exec(text);
  const major = m ? (m[1] === "1" ? Number(m[2]) : Number(m[1])) : NaN;
  if (!(major >= 17)) throw new Error(`Java 17+ is needed for the test services; '${java} -version' says: ${text.split("\n")[0]}`);
  javaChecked = true;
  return java;
}

export function javacBin() {
  const javac = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, "bin", "javac") : "javac";
  try {
    execFileSync(javac, ["-version"], { stdio: "pipe", timeout: 30_000 });
  } catch (err) {
    if (err.code === "ENOENT") throw new Error(`javac is missing: the Mongo test server is compiled from test/services/mongo/TestMongoServer.java and needs a JDK 17+ (apt-get install openjdk-17-jdk-headless), not only a JRE.`);
    throw new Error(`'${javac} -version' failed: ${firstLine(err)}`);
  }
  return javac;
}

function run(file, args, { timeout, cwd, what }) {
  return new Promise((resolvePromise, reject) => {
    execFile(file, args, { cwd, timeout, maxBuffer: 64 * 1024 * 1024, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (!err) return resolvePromise({ stdout, stderr });
      if (err.code === "ENOENT") return reject(Object.assign(new Error(`${what}: '${file}' not found`), { code: "ENOENT" }));
      const why = err.killed ? `timed out after ${Math.round(timeout / 1000)} s` : `exit code ${err.code}`;
      reject(new Error(`${what} failed (${why}):\n${tail(`${stdout}${stderr}`)}`));
    });
  });
}

/**
 * The jars of `pom` copied into `lib` by `mvn dependency:copy-dependencies`, done once per
 * version of the pom (a stamp in lib/ holds its hash). Returns true when it downloaded/copied.
 */
export async function resolveJars(name, pom) {
  const { lib, dir } = paths(name);
  const hash = createHash("sha256").update(readFileSync(pom)).digest("hex");
  const stamp = join(lib, ".pom.sha256");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === hash) return false;
  const staging = join(dir, "lib.partial");
  rmSync(staging, { recursive: true, force: true });
  const mvn = process.env.MVN ?? "mvn";
  const args = [
    "-q",
    "-B",
    "-Dstyle.color=never",
    "-f",
    pom,
    "dependency:copy-dependencies",
    `-DoutputDirectory=${staging}`,
    "-DincludeScope=runtime",
  ];
  try {
    // One Maven at a time: Maven 3.8 does not lock its local repository against itself.
    await withLockDir(join(SERVICES_DIR, "maven.lock"), "Maven", () =>
      run(mvn, args, { timeout: MAVEN_TIMEOUT_MS, cwd: dirname(pom), what: `Maven resolving the ${name} test service's jars (${pom})` }),
    );
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if (err.code === "ENOENT") {
      throw new Error(`Maven is missing: '${mvn}' not found. The ${name} test service's jars come from Maven Central through it: apt-get install maven (or set MVN).`);
    }
    throw new Error(`${err.message}\nMaven could not download the ${name} test service from Maven Central: check that the registry is reachable (and ~/.m2/settings.xml).`);
  }
  const jars = existsSync(staging) ? readdirSync(staging).filter((f) => f.endsWith(".jar")) : [];
  if (jars.length === 0) throw new Error(`Maven resolved no jars for the ${name} test service from ${pom}`);
  writeFileSync(join(staging, ".pom.sha256"), hash);
  rmSync(lib, { recursive: true, force: true });
  renameSync(staging, lib);
  return true;
}

/** javac `source` against lib/* into `classes`, unless the class files are newer. */
export async function compileJava(name, source, mainClass) {
  const { lib, dir } = paths(name);
  const classes = join(dir, "classes");
  const classFile = join(classes, `${mainClass}.class`);
  const libStamp = join(lib, ".pom.sha256");
  if (existsSync(classFile) && statSync(classFile).mtimeMs > Math.max(statSync(source).mtimeMs, statSync(libStamp).mtimeMs)) {
    return { classes, compiled: false };
  }
  const javac = javacBin();
  rmSync(classes, { recursive: true, force: true });
  mkdirSync(classes, { recursive: true });
  await run(javac, ["-encoding", "UTF-8", "--release", "17", "-cp", join(lib, "*"), "-d", classes, source], {
    timeout: 120_000,
    cwd: dir,
    what: `javac ${source}`,
  });
  return { classes, compiled: true };
}

/** The npm client a health check talks through; missing, it is a fatal, clear error. */
export async function importClient(pkg, service) {
  try {
    return await import(pkg);
  } catch (err) {
    throw Object.assign(new Error(`the ${service} test service is checked with the npm package ${pkg}, which cannot be loaded (${firstLine(err)}): run npm install`), { fatal: true });
  }
}

// ---------------------------------------------------------------- ports

export function freePort() {
  return new Promise((resolvePromise, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolvePromise(port));
    });
  });
}

export function portIsFree(port) {
  return new Promise((resolvePromise) => {
    const srv = net.createServer();
    srv.once("error", () => resolvePromise(false));
    srv.listen(port, HOST, () => srv.close(() => resolvePromise(true)));
  });
}

/**
 * The port to use: the env override (which must be free), else the one used last time if it
 * is free (clients that reconnect after a restart find the service where it was), else any.
 */
export async function choosePort(envName, previous, exclude = []) {
  const fromEnv = process.env[envName];
  if (fromEnv) {
    const port = Number(fromEnv);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`${envName}=${fromEnv} is not a port`);
    if (!(await portIsFree(port))) throw new Error(`${envName}=${port}, but ${HOST}:${port} is already in use by something else`);
    return port;
  }
  if (previous && !exclude.includes(previous) && (await portIsFree(previous))) return previous;
  for (;;) {
    const port = await freePort();
    if (!exclude.includes(port)) return port;
  }
}

export function portAnswers(port, timeoutMs = 1000) {
  return new Promise((resolvePromise) => {
    const socket = net.connect({ host: HOST, port });
    const done = (ok) => {
      socket.destroy();
      resolvePromise(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

// ---------------------------------------------------------------- processes

/** The JVM system property that marks a process as this checkout's test service `name`. */
export function marker(name) {
  return `-Daudit-ledger.test-service=${name}@${SERVICES_DIR}`;
}

export function pidAlive(pid) {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return err.code === "EPERM";
  }
  // A zombie is not alive.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

/** Alive and really our service (not a recycled pid). */
export function isOurs(name, pid) {
  if (!pidAlive(pid)) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(marker(name));
  } catch {
    return true; // no /proc: trust the pid
  }
}

/** Resident memory of a process in MiB (from /proc), or undefined. */
export function rssMiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

/** Starts `java args` detached (it outlives this process), stdout+stderr appended to the log. */
export function spawnDetached(name, java, args, cwd) {
  const p = paths(name);
  const fd = openSync(p.log, "a");
  try {
    writeFileSync(fd, `\n===== ${new Date().toISOString()} starting ${name}: ${java} ${args.join(" ")}\n`);
    const child = spawn(java, args, { cwd, detached: true, stdio: ["ignore", fd, fd] });
    child.on("error", () => undefined);
    if (!child.pid) throw new Error(`could not start ${java} for the ${name} test service`);
    child.unref();
    writeFileSync(p.pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/**
 * Polls `check` until it returns true; fails early when the process died, and after
 * `timeoutMs` with the log's tail either way.
 */
export async function waitReady(name, pid, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) {
      throw new Error(`the ${name} test service exited while starting (pid ${pid}); its log ${paths(name).log} ends with:\n${logTail(name)}`);
    }
    try {
      if (await check()) return;
    } catch (err) {
      // A check that can never pass (e.g. the driver refuses the server) ends the wait.
      if (err?.fatal) throw new Error(`the ${name} test service started but ${err.message}`);
      lastError = err;
    }
    await sleep(250);
  }
  throw new Error(
    `the ${name} test service did not become ready within ${Math.round(timeoutMs / 1000)} s` +
      (lastError ? ` (last check: ${firstLine(lastError)})` : "") +
      `; its log ${paths(name).log} ends with:\n${logTail(name)}`,
  );
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function killPid(pid, graceMs) {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return;
    await sleep(100);
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  for (let i = 0; i < 50 && pidAlive(pid); i++) await sleep(100);
}

// ---------------------------------------------------------------- state and lock

export function readState(name) {
  try {
    return JSON.parse(readFileSync(paths(name).state, "utf8"));
  } catch {
    return undefined;
  }
}

export function writeState(name, state) {
  const file = paths(name).state;
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

function readPidFile(name) {
  try {
    return Number(readFileSync(paths(name).pidFile, "utf8")) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Forgets the process but keeps the rest of the state (ports, ids) so the next start can
 * put the service back where it was.
 */
export function clearState(name) {
  const p = paths(name);
  const state = readState(name);
  if (state) {
    delete state.pid;
    delete state.startedAt;
    writeState(name, { ...state, stoppedAt: new Date().toISOString() });
  }
  rmSync(p.pidFile, { force: true });
}

/** Runs `fn` holding the service's lock (a directory), so concurrent starts/stops queue up. */
export async function withLock(name, fn) {
  return withLockDir(paths(name).lock, `the ${name} test service`, fn);
}

async function withLockDir(lock, what, fn) {
  mkdirSync(dirname(lock), { recursive: true });
  const deadline = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      mkdirSync(lock);
      writeFileSync(join(lock, "owner"), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
      let owner = 0;
      try {
        owner = Number(readFileSync(join(lock, "owner"), "utf8"));
      } catch {
        // being written, or left half-made by a process that died right then
      }
      let age = 0;
      try {
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue;
      }
      if ((owner && !pidAlive(owner)) || (!owner && age > 10_000)) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${what} is locked by process ${owner} (${lock}) for too long`);
      await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- the service pattern

/**
 * The start/stop/status of one JVM service, given how to prepare it (jars, config), launch it
 * (java args) and check it (health). `describe(state)` turns a state into what callers get.
 *
 * def: {
 *   name, graceMs, readyTimeoutMs,
 *   external(): handle | undefined          // env points at a service run elsewhere
 *   prepare(previousState, opts): Promise<{ state, java, args, cwd }>
 *   healthy(state): Promise<boolean>        // deep check (a real request)
 *   describe(state): object                 // url/brokers/endpoint... for callers
 * }
 */
export function defineService(def) {
  const { name } = def;

  async function stopService() {
    await withLock(name, async () => {
      for (const pid of new Set([readState(name)?.pid, readPidFile(name)])) {
        if (pid && isOurs(name, pid)) await killPid(pid, def.graceMs);
      }
      clearState(name);
    });
  }

  async function status() {
    const state = readState(name);
    if (!state?.pid) return { name, running: false };
    const alive = isOurs(name, state.pid);
    const answers = alive ? await portAnswers(state.port) : false;
    return { name, running: alive && answers, pid: state.pid, alive, answers, rssMiB: alive ? rssMiB(state.pid) : undefined, ...def.describe(state) };
  }

  /**
   * Starts the service unless a healthy instance of it runs already (then it is reused).
   * opts.fresh: stop it and wipe its data first.
   */
  async function start(opts = {}) {
    const external = await def.external?.();
    if (external) return external;
    const began = Date.now();
    return withLock(name, async () => {
      const p = paths(name);
      const previous = readState(name);
      if (previous && !opts.fresh && isOurs(name, previous.pid)) {
        if ((await portAnswers(previous.port)) && (await def.healthy(previous).catch(() => false))) {
          return handle(previous, { started: false, ms: Date.now() - began });
        }
      }
      // Whatever of ours is left (hung, half-started, or being replaced by a fresh one) goes.
      for (const pid of new Set([previous?.pid, readPidFile(name)])) {
        if (pid && isOurs(name, pid)) await killPid(pid, def.graceMs);
      }
      clearState(name);
      // Fresh: no data left (the ports stay, so clients find it where it was).
      if (opts.fresh) rmSync(p.data, { recursive: true, force: true });
      const java = javaBin();
      const t0 = Date.now();
      const prepared = await def.prepare(previous, opts, java);
      const prepareMs = Date.now() - t0;
      const pid = spawnDetached(name, java, [marker(name), ...prepared.args], prepared.cwd ?? p.dir);
      const state = { ...prepared.state, pid, startedAt: new Date().toISOString() };
      try {
        await waitReady(name, pid, def.readyTimeoutMs, async () => (await portAnswers(state.port)) && (await def.healthy(state)));
      } catch (err) {
        await killPid(pid, 2000);
        clearState(name);
        throw err;
      }
      writeState(name, state);
      return handle(state, { started: true, ms: Date.now() - began, prepareMs, downloaded: prepared.downloaded });
    });
  }

  function handle(state, info) {
    return {
      name,
      ...def.describe(state),
      pid: state.pid,
      /** True when this call launched the process; false when a running one was reused. */
      started: info.started,
      timings: { totalMs: info.ms, prepareMs: info.prepareMs, downloaded: info.downloaded ?? false },
      /**
       * Stops the service if this call started it (so a test run stops what it started and
       * leaves alone what was already running); `{ always: true }` stops it regardless.
       */
      async stop(o = {}) {
        if (info.started || o.always) await stopService();
      },
    };
  }

  return { name, start, stop: stopService, status };
}
