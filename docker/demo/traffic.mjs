// The Docker demo's traffic: every few seconds, one event in each upstream system the
// demo agent reads (docker/agent/agent.yaml), so `docker compose up` shows every source
// type landing in the ledger. Each system is retried on its own until it answers.
import pg from "pg";
import { MongoClient } from "mongodb";
import { Kafka, logLevel } from "kafkajs";
import mqtt from "mqtt";
import { createClient } from "redis";
import { SQSClient, GetQueueUrlCommand, SendMessageCommand } from "@aws-sdk/client-sqs";

const EVERY_MS = Number(process.env.DEMO_EVERY_MS ?? 5000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function connected(name, connect) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect();
    } catch (err) {
      console.log(`demo: ${name} not ready (${err.message}); retrying`);
      await sleep(Math.min(1000 * attempt, 5000));
    }
  }
}

const postgres = await connected("postgres", async () => {
  const c = new pg.Client({ connectionString: "postgres://postgres:postgres@postgres:5432/shop" });
  await c.connect();
  return c;
});
const mongo = await connected("mongo", () => new MongoClient("mongodb://mongo:27017/?replicaSet=rs0").connect());
const producer = await connected("kafka", async () => {
  const p = new Kafka({ clientId: "audit-ledger-demo", brokers: ["kafka:9092"], logLevel: logLevel.WARN }).producer();
  await p.connect();
  return p;
});
const broker = await connected("mosquitto", () => mqtt.connectAsync("mqtt://mosquitto:1883", { clientId: "audit-ledger-demo" }));
const redis = await connected("redis", () => createClient({ url: "redis://redis:6379" }).connect());
const sqs = new SQSClient({ endpoint: "http://sqs:9324", region: "us-east-1" });
const queueUrl = await connected("sqs", async () => (await sqs.send(new GetQueueUrlCommand({ QueueName: "s3-events" }))).QueueUrl);

for (let n = 1; ; n++) {
  const at = new Date().toISOString();
  const steps = {
    postgres: async () => {
      const { rows } = await postgres.query("INSERT INTO orders (customer, total_cents) VALUES ($1, $2) RETURNING id", [`customer-${n % 7}`, 100 * n]);
      if (n % 3 === 0) await postgres.query("UPDATE orders SET status = 'paid' WHERE id = $1", [rows[0].id]);
    },
    mongo: () => mongo.db("shop").collection("carts").updateOne({ _id: `cart-${n % 5}` }, { $set: { items: n, at } }, { upsert: true }),
    kafka: () => producer.send({ topic: "orders", messages: [{ key: `order-${n}`, value: JSON.stringify({ order: n, at }) }] }),
    mqtt: () => broker.publishAsync(`plant/line${n % 3}/temperature`, JSON.stringify({ celsius: 20 + (n % 10), at }), { qos: 1 }),
    redis: async () => {
      await redis.xAdd("audit:logins", "*", { user: `user-${n % 4}`, at });
      await redis.set(`session:${n % 4}`, at);
    },
    sqs: () =>
      sqs.send(
        new SendMessageCommand({
          QueueUrl: queueUrl,
          MessageBody: JSON.stringify({
            Records: [
              {
                eventVersion: "2.1",
                eventSource: "aws:s3",
                awsRegion: "us-east-1",
                eventTime: at,
                eventName: "ObjectCreated:Put",
                s3: {
                  bucket: { name: "invoices", arn: "arn:aws:s3:::invoices" },
                  object: { key: `2026/invoice-${n}.pdf`, size: 1000 + n, eTag: `etag${n}`, sequencer: n.toString(16).padStart(16, "0").toUpperCase() },
                },
              },
            ],
          }),
        }),
      ),
  };
  for (const [name, step] of Object.entries(steps)) {
    try {
      await step();
    } catch (err) {
      console.log(`demo: ${name}: ${err.message}`);
    }
  }
  console.log(`demo: round ${n} sent to postgres, mongo, kafka, mqtt, redis, sqs`);
  await sleep(EVERY_MS);
}
