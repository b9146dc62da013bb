#!/usr/bin/env node
// End-to-end check of the test services with the clients the sources will use (not a vitest
// test): node test/services/verify.mjs [kafka|mongo|sqs ...] [--stop]
//   kafka: create a topic, produce 10 messages, read them back in a consumer group.
//   mongo: connect, open a change stream, insert, see the insert (and update, delete) in it.
//   sqs:   create a queue, send, receive, extend visibility, delete, see it empty.
// Prints start times (first/warm as they happen) and each JVM's RSS; --stop stops each
// service afterwards. Every step is bounded; exit code 1 if any check fails.
import { randomUUID } from "node:crypto";
import { NAMES, services } from "./index.mjs";
import { rssMiB } from "./lib.mjs";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const args = process.argv.slice(2);
const stopAfter = args.includes("--stop");
const names = args.filter((a) => !a.startsWith("--"));
const chosen = names.length ? names : [...NAMES];

function within(ms, what, promise) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function assert(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

async function checkKafka(h) {
  const { Kafka, logLevel, Partitioners } = await import("kafkajs");
  const kafka = new Kafka({ clientId: "verify", brokers: h.brokers, logLevel: logLevel.NOTHING });
  const topic = `verify-${randomUUID()}`;
  const admin = kafka.admin();
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const consumer = kafka.consumer({ groupId: `verify-${randomUUID()}` });
  const n = 10;
  try {
    await admin.connect();
    assert(await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true }), "topic created");
    await producer.connect();
    await producer.send({ topic, messages: Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    const seen = new Set();
    await within(30_000, "consuming the 10 messages", new Promise((resolve, reject) => {
      consumer.run({
        eachMessage: async ({ message }) => {
          seen.add(String(message.value));
          if (seen.size === n) resolve(undefined);
        },
      }).catch(reject);
    }));
    assert(seen.size === n, `${n} distinct messages read back`);
    await consumer.stop();
    const offsets = await admin.fetchTopicOffsets(topic);
    const total = offsets.reduce((sum, p) => sum + Number(p.high), 0);
    assert(total === n, `high watermarks add up to ${n} (got ${total})`);
    await admin.deleteTopics({ topics: [topic] });
    return `topic with 2 partitions, ${n} produced, ${n} consumed in a group`;
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}

async function checkMongo(h) {
  const { MongoClient } = await import("mongodb");
  const client = new MongoClient(h.url, { serverSelectionTimeoutMS: 5000 });
  try {
    await client.connect();
    const hello = await client.db("admin").command({ isMaster: 1 });
    const coll = client.db("verify").collection(`c_${Date.now()}`);
    const stream = coll.watch([], { fullDocument: "updateLookup" });
    // tryNext() opens the stream on the server (aggregate) and returns null: no events yet.
    assert((await within(10_000, "change stream open", stream.tryNext())) === null, "a new change stream is empty");
    const { insertedId } = await coll.insertOne({ n: 1 });
    const insert = await within(10_000, "insert seen in the change stream", stream.next());
    assert(insert.operationType === "insert", `insert event (got ${insert.operationType})`);
    assert(String(insert.documentKey?._id) === String(insertedId), "documentKey is the inserted _id");
    await coll.updateOne({ _id: insertedId }, { $set: { n: 2 } });
    const update = await within(10_000, "update seen", stream.next());
    assert(update.operationType === "update", `update event (got ${update.operationType})`);
    await coll.deleteOne({ _id: insertedId });
    const del = await within(10_000, "delete seen", stream.next());
    assert(del.operationType === "delete", `delete event (got ${del.operationType})`);
    // Resuming from the insert's token replays what followed it.
    const resumed = coll.watch([], { startAfter: insert._id });
    const again = await within(10_000, "resume after the insert", resumed.next());
    assert(again.operationType === "update", `resumed stream starts with the update (got ${again.operationType})`);
    await resumed.close();
    await stream.close();
    return `maxWireVersion ${hello.maxWireVersion}; insert/update/delete seen in a change stream; startAfter resumes`;
  } finally {
    await client.close().catch(() => undefined);
  }
}

async function checkSqs(h) {
  const sqs = await import("@aws-sdk/client-sqs");
  const client = new sqs.SQSClient({ endpoint: h.endpoint, region: h.region, credentials: h.credentials, maxAttempts: 2 });
  const signal = () => ({ abortSignal: AbortSignal.timeout(10_000) });
  try {
    const { QueueUrl } = await client.send(new sqs.CreateQueueCommand({ QueueName: `verify-${Date.now()}`, Attributes: { VisibilityTimeout: "30" } }), signal());
    assert(QueueUrl?.startsWith(h.endpoint), `queue URL on the endpoint (${QueueUrl})`);
    const body = JSON.stringify({ Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: "b" }, object: { key: "k", size: 1 } } }] });
    await client.send(new sqs.SendMessageCommand({ QueueUrl, MessageBody: body }), signal());
    const got = await client.send(new sqs.ReceiveMessageCommand({ QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 2 }), signal());
    assert(got.Messages?.length === 1 && got.Messages[0].Body === body, "the message received back");
    const handle = got.Messages[0].ReceiptHandle;
    await client.send(new sqs.ChangeMessageVisibilityCommand({ QueueUrl, ReceiptHandle: handle, VisibilityTimeout: 60 }), signal());
    await client.send(new sqs.DeleteMessageCommand({ QueueUrl, ReceiptHandle: handle }), signal());
    const after = await client.send(new sqs.ReceiveMessageCommand({ QueueUrl, WaitTimeSeconds: 1 }), signal());
    assert(!after.Messages?.length, "queue empty after delete");
    await client.send(new sqs.DeleteQueueCommand({ QueueUrl }), signal());
    return "create queue, send, receive, change visibility, delete, empty";
  } finally {
    client.destroy();
  }
}

const checks = { kafka: checkKafka, mongo: checkMongo, sqs: checkSqs };
let failed = 0;
for (const name of chosen) {
  if (!checks[name]) {
    console.error(`unknown service ${name}; one of ${NAMES.join(", ")}`);
    process.exit(2);
  }
  const t0 = Date.now();
  try {
    const h = await services[name].start();
    const startMs = Date.now() - t0;
    const what = h.external ? "external" : h.started ? (h.timings?.downloaded ? "first start (jars downloaded)" : "started") : "reused";
    const t1 = Date.now();
    const result = await within(90_000, `${name} check`, checks[name](h));
    const rss = h.pid ? rssMiB(h.pid) : undefined;
    console.log(`ok   ${name.padEnd(5)} ${what} in ${startMs} ms; check ${Date.now() - t1} ms; RSS ${rss ?? "?"} MiB; ${h.url}\n       ${result}`);
    if (stopAfter) {
      const t2 = Date.now();
      await h.stop({ always: true });
      console.log(`       stopped in ${Date.now() - t2} ms`);
    }
  } catch (err) {
    failed++;
    console.error(`FAIL ${name.padEnd(5)} ${err?.message ?? err}`);
    if (stopAfter) await services[name].stop().catch(() => undefined);
  }
}
process.exit(failed ? 1 : 0);
