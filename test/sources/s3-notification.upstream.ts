// The `s3_notification` source's upstream for the shared source scenarios: the suite's
// ElasticMQ (inject("sqs")), a fresh queue per scenario, and per event i one SQS message
// shaped exactly like an S3 event notification: one `ObjectCreated:Put` record for the
// object `upstream/<scenario>/<i>` in bucket `audit-ledger-test`, its sequencer i.
// (No S3 here: the source only ever sees the notification, so the test writes it.)
//
// Padding (`padBytes`) goes into the object key, the one field of a real notification
// that is large; past 1,024 bytes the key is longer than S3 allows, which the source does
// not check, and the subject is cut with a digest (docs/sources/s3-notification.md, "Events").
//
// The agent reads the secret key from the environment variable named below, set here in
// this process: the scenario runner's agent processes inherit it.
import { randomBytes } from "node:crypto";
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, SendMessageBatchCommand, SQSClient } from "@aws-sdk/client-sqs";
import { expect, inject } from "vitest";
import { eventsOfBody, subjectOf } from "../../agent/sources/s3-notification/notification-events.js";
import { freePort } from "../support/free-port.js";
import type { StoredEntry } from "../../chain/index.js";
import type { BadConfig, ScenarioUpstream, UpstreamUnderTest } from "./upstream.js";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = "true";
const SECRET_ENV = "AUDIT_LEDGER_TEST_SQS_SECRET";
const BUCKET = "audit-ledger-test";
const EVENT_TIME = "2026-11-22T12:00:00.000Z";
/** `s3n1:record:<32 hex>` (docs/sources/s3-notification.md, "Positions"). */
const POSITION = /^s3n1:record:[0-9a-f]{32}$/;

function sqsClient(): SQSClient {
  const sqs = inject("sqs");
  process.env[SECRET_ENV] = sqs.secretAccessKey;
  return new SQSClient({ endpoint: sqs.endpoint, region: sqs.region, credentials: { accessKeyId: sqs.accessKeyId, secretAccessKey: sqs.secretAccessKey } });
}

/** The source config entry for `queueUrl` on the suite's ElasticMQ. */
function configFor(queueUrl: string, endpoint = inject("sqs").endpoint): Record<string, unknown> {
  const sqs = inject("sqs");
  return {
    queue_url: queueUrl,
    endpoint,
    region: sqs.region,
    access_key_id: sqs.accessKeyId,
    secret_access_key_env: SECRET_ENV,
    // Short, so a killed agent's messages come back soon and a stop waits little.
    visibility_timeout_s: 5,
    wait_time_s: 2,
  };
}

class S3NotificationScenario implements ScenarioUpstream {
  readonly config: Record<string, unknown>;

  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
    private readonly prefix: string,
  ) {
    this.config = configFor(queueUrl);
  }

  private keyOf(i: number, padBytes = 0): string {
    return `${this.prefix}/${i}${padBytes > 0 ? `/${"x".repeat(padBytes)}` : ""}`;
  }

  /** The notification S3 would send for event i (one record). */
  private bodyOf(i: number, key: string): string {
    return JSON.stringify({
      Records: [
        {
          eventVersion: "2.1",
          eventSource: "aws:s3",
          awsRegion: "us-east-1",
          eventTime: EVENT_TIME,
          eventName: "ObjectCreated:Put",
          userIdentity: { principalId: "AWS:AIDATESTAGENT" },
          requestParameters: { sourceIPAddress: "192.0.2.1" },
          responseElements: { "x-amz-request-id": `REQ${i}`, "x-amz-id-2": "test" },
          s3: {
            s3SchemaVersion: "1.0",
            configurationId: "audit-ledger",
            bucket: { name: BUCKET, ownerIdentity: { principalId: "OWNER" }, arn: `arn:aws:s3:::${BUCKET}` },
            object: { key, size: i, eTag: `etag-${i}`, sequencer: i.toString(16).toUpperCase().padStart(16, "0") },
          },
        },
      ],
    });
  }

  async produce(from: number, to: number, padBytes = 0): Promise<void> {
    // In order, ten per request (SQS's batch limit); each batch is stored before the next.
    for (let start = from; start < to; start += 10) {
      const entries = [];
      for (let i = start; i < Math.min(to, start + 10); i++) entries.push({ Id: String(i - start), MessageBody: this.bodyOf(i, this.keyOf(i, padBytes)) });
      const out = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: entries }));
      if ((out.Failed ?? []).length > 0) throw new Error(`SendMessageBatch failed: ${JSON.stringify(out.Failed)}`);
    }
  }

  identify(entry: StoredEntry): number {
    expect(entry.kind).toBe("object_created");
    expect(entry.payload_type).toBe("application/json");
    expect(entry.payload).toBeDefined();
    const payload = JSON.parse(Buffer.from(entry.payload!).toString("utf8")) as Record<string, unknown>;
    const key = String(payload.key);
    const match = new RegExp(`^${this.prefix}/(\\d+)(/x*)?$`).exec(key);
    expect(match, `object key ${key}`).not.toBeNull();
    const i = Number(match![1]);
    expect(payload).toMatchObject({ event_name: "ObjectCreated:Put", bucket: BUCKET, size: i, etag: `etag-${i}`, request_id: `REQ${i}` });
    expect(entry.subject).toBe(subjectOf(BUCKET, key));
    expect(entry.occurred_at).toBe(EVENT_TIME);
    expect(entry.actor).toBe("AWS:AIDATESTAGENT");
    // The position comes from the notification's content: the one S3 would send for i.
    expect(entry.source_position).toMatch(POSITION);
    const expected = eventsOfBody(this.bodyOf(i, key), false);
    expect(expected.ok && expected.events[0]!.position).toBe(entry.source_position);
    return i;
  }

  /** Messages in the queue not received yet (received but not deleted ones are not counted). */
  async unconsumed(): Promise<number> {
    const { Attributes: a = {} } = await this.client.send(new GetQueueAttributesCommand({ QueueUrl: this.queueUrl, AttributeNames: ["ApproximateNumberOfMessages"] }));
    return Number(a.ApproximateNumberOfMessages);
  }

  async cleanup(): Promise<void> {
    await this.client.send(new DeleteQueueCommand({ QueueUrl: this.queueUrl })).catch(() => undefined);
    this.client.destroy();
  }
}

export const s3NotificationUpstream: UpstreamUnderTest = {
  type: "s3_notification",

  async prepare(): Promise<ScenarioUpstream> {
    const id = randomBytes(6).toString("hex");
    const client = sqsClient();
    const { QueueUrl } = await client.send(new CreateQueueCommand({ QueueName: `audit-ledger-test-${id}` }));
    return new S3NotificationScenario(client, QueueUrl!, `upstream/${id}`);
  },

  async badConfigs(): Promise<BadConfig[]> {
    sqsClient(); // sets the secret's variable
    const { endpoint } = inject("sqs");
    const missing = `${endpoint}/000000000000/audit-ledger-test-missing-${randomBytes(6).toString("hex")}`;
    // Nothing listens on a port that was free a moment ago.
    const deadEndpoint = `http://127.0.0.1:${await freePort()}`;
    const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
    return [
      {
        what: "a queue that does not exist",
        config: configFor(missing),
        message: new RegExp(`queue ${escape(missing)} does not exist`),
      },
      {
        what: "an unreachable SQS endpoint",
        config: configFor(`${deadEndpoint}/000000000000/q`, deadEndpoint),
        message: new RegExp(`cannot reach the SQS endpoint ${escape(deadEndpoint)}: .*ECONNREFUSED`),
      },
    ];
  },
};

export default s3NotificationUpstream;
