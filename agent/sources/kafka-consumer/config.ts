// The kafka_consumer source's configuration (everything but `name` and `type`). Unknown
// keys are refused, and every error names the field it is about.
import { z } from "zod";

/** What the ledger accepts as a kind (server/ledger/validate-event.ts). */
const KIND = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
/** A MIME type as the ledger stores it (at most 128 characters). */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;.*)?$/;
/** Kafka's own rule for topic names (kafka.common.internals.Topic). */
export const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A `topics` entry written `/regex/` is a pattern; anything else is one topic's name. */
export function topicPattern(entry: string): RegExp | undefined {
  return entry.length >= 2 && entry.startsWith("/") && entry.endsWith("/") ? new RegExp(entry.slice(1, -1)) : undefined;
}

const broker = z.string().superRefine((text, ctx) => {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65_535) {
    ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not host:port (e.g. kafka-1.internal:9092)` });
  }
});

const topicEntry = z.string().superRefine((text, ctx) => {
  if (text.startsWith("/")) {
    if (text.length < 3 || !text.endsWith("/")) {
      ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}": a pattern is written /regex/` });
      return;
    }
    try {
      topicPattern(text);
    } catch (err) {
      ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a valid regular expression: ${(err as Error).message}` });
    }
    return;
  }
  if (!TOPIC_NAME.test(text) || text === "." || text === "..") {
    ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -), nor a /regex/` });
  }
});

const sasl = z
  .strictObject({
    mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"], "must be plain, scram-sha-256 or scram-sha-512"),
    username: z.string().min(1, "must not be empty"),
    password: z.string().optional(),
    /** The name of an environment variable holding the password (read at start). */
    password_env: z.string().regex(ENV_NAME, "must be an environment variable name").optional(),
  })
  .superRefine((s, ctx) => {
    if (s.password !== undefined && s.password_env !== undefined) {
      ctx.addIssue({ code: "custom", path: ["password_env"], message: "give password or password_env, not both" });
    }
    if (s.password === undefined && s.password_env === undefined) {
      ctx.addIssue({ code: "custom", path: ["password"], message: "give password or password_env" });
    }
  });

export const kafkaConsumerConfigSchema = z
  .strictObject({
    /** Bootstrap brokers, host:port. */
    brokers: z.array(broker).min(1, "list at least one broker (host:port)"),
    /**
     * The consumer group. Kafka keeps the group's committed offsets: that is where the
     * source resumes after a restart. Keep it stable, and used by this source alone.
     */
    group_id: z.string().min(1, "must not be empty").max(255, "at most 255 characters"),
    /** Topic names, or /regex/ patterns matched against the topics that exist at start (internal `__` topics left out). */
    topics: z
      .array(topicEntry)
      .min(1, "list at least one topic")
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((t, i) => {
          if (seen.has(t)) ctx.addIssue({ code: "custom", path: [i], message: `"${t.slice(0, 80)}" is listed twice` });
          seen.add(t);
        });
      }),
    /**
     * Where a partition the group has no committed offset for starts: its first message
     * (true), or its end as read when the source starts (false).
     */
    from_beginning: z.boolean().default(false),
    client_id: z.string().min(1, "must not be empty").max(255, "at most 255 characters").default("audit-ledger-agent"),
    /** TLS to the brokers, checked against the system CAs (or `ssl_ca_file`). */
    ssl: z.boolean().default(false),
    /** A PEM file of CAs to trust for TLS instead of the system ones. */
    ssl_ca_file: z.string().min(1, "must not be empty").optional(),
    sasl: sasl.optional(),
    /** How long start() may take to reach the brokers and read the topics, in ms. */
    connect_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
    /** Kafka's session.timeout.ms: a member silent this long is dropped from the group. */
    session_timeout_ms: z.number().int().min(1_000).max(3_600_000).default(30_000),
    /** Kafka's rebalance timeout: how long the group waits for members to rejoin. */
    rebalance_timeout_ms: z.number().int().min(1_000).max(3_600_000).default(60_000),
    /** How often the source heartbeats to the group coordinator, in ms (below session_timeout_ms). */
    heartbeat_interval_ms: z.number().int().min(100).max(3_600_000).default(3_000),
    /** Most bytes fetched per partition per request (a bigger message is still fetched whole). */
    max_bytes_per_partition: z.number().int().min(1_024).max(1 << 30).default(1 << 20),
    /** The kind of every event. */
    kind: z.string().regex(KIND, "may hold only letters, digits and . _ : / - (at most 128)").default("kafka.message"),
    /**
     * `envelope`: the payload is a JSON document with the topic, partition, offset,
     * timestamp, key, headers and value. `value`: the payload is the message value alone.
     */
    payload: z.enum(["envelope", "value"], "must be envelope or value").default("envelope"),
    /**
     * The media type of message values. With `payload: value` it is the payload_type;
     * with `payload: envelope` a JSON type puts a value that parses as JSON in the
     * envelope as JSON (`value_json`) instead of as text.
     */
    value_type: z.string().max(128, "at most 128 characters").regex(MEDIA_TYPE, 'must be a media type such as "application/json"').default("application/octet-stream"),
  })
  .superRefine((c, ctx) => {
    if (c.heartbeat_interval_ms >= c.session_timeout_ms) {
      ctx.addIssue({ code: "custom", path: ["heartbeat_interval_ms"], message: `must be below session_timeout_ms (${c.session_timeout_ms}); about a third of it is usual` });
    }
    if (c.ssl_ca_file !== undefined && !c.ssl) {
      ctx.addIssue({ code: "custom", path: ["ssl_ca_file"], message: "is used only with ssl: true" });
    }
  });

export type KafkaConsumerConfigInput = z.input<typeof kafkaConsumerConfigSchema>;
export type KafkaConsumerConfig = z.output<typeof kafkaConsumerConfigSchema>;
