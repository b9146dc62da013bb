// The mqtt source's configuration (everything but `name` and `type`). Unknown keys are
// refused, and every error names the field it is about.
import { z } from "zod";
import { topicFilterProblem } from "./topic-filter.js";

/** What the ledger accepts as a kind (server/ledger/validate-event.ts). */
const KIND = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/;
/** A MIME type as the ledger stores it (at most 128 characters). */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;.*)?$/;
/** MQTT 5 "never expires". */
export const SESSION_NEVER_EXPIRES = 0xffff_ffff;

const brokerUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a URL; expected mqtt://host:1883 or mqtts://host:8883` });
    return;
  }
  if (url.protocol !== "mqtt:" && url.protocol !== "mqtts:") {
    ctx.addIssue({ code: "custom", message: `must be an mqtt:// or mqtts:// URL, not ${url.protocol}//` });
  }
  if (url.hostname === "") ctx.addIssue({ code: "custom", message: "names no host" });
  if (url.username !== "" || url.password !== "") {
    ctx.addIssue({ code: "custom", message: "must not contain user:password; use username and password (or password_env)" });
  }
  if ((url.pathname !== "" && url.pathname !== "/") || url.search !== "" || url.hash !== "") {
    ctx.addIssue({ code: "custom", message: "must be scheme, host and port only (topics go in `topics`)" });
  }
});

const topicFilter = z.string().superRefine((text, ctx) => {
  const problem = topicFilterProblem(text);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
});

export const mqttConfigSchema = z
  .strictObject({
    /** The broker: mqtt://host[:1883] or mqtts://host[:8883] (system CAs). */
    url: brokerUrl,
    /**
     * The MQTT client id, which names the broker-side session. It must stay the same
     * across restarts (the session, and the messages queued in it, belong to it) and be
     * used by nothing else: a second client with it takes the session over.
     */
    client_id: z
      .string()
      .min(1, "must not be empty")
      .max(256, "at most 256 characters")
      .refine((s) => s.isWellFormed() && !s.includes("\u0000"), "must be valid UTF-8 without NUL"),
    /** Topic filters to subscribe to at QoS 1 (+ and # wildcards, $share/<group>/... allowed). */
    topics: z
      .array(topicFilter)
      .min(1, "list at least one topic filter")
      .superRefine((list, ctx) => {
        const seen = new Set<string>();
        list.forEach((t, i) => {
          if (seen.has(t)) ctx.addIssue({ code: "custom", path: [i], message: `"${t.slice(0, 80)}" is listed twice` });
          seen.add(t);
        });
      }),
    /** 5 (MQTT 5.0) or 4 (MQTT 3.1.1). */
    protocol_version: z.union([z.literal(4), z.literal(5)]).default(5),
    username: z.string().min(1, "must not be empty").optional(),
    password: z.string().optional(),
    /** The name of an environment variable holding the password (read at start). */
    password_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").optional(),
    /**
     * MQTT 5: how long the broker keeps the session (and queues messages for it) while
     * the agent is disconnected, in seconds; the default, 4294967295, is "never expires".
     * MQTT 3.1.1 sessions never expire unless the broker is configured to expire them.
     */
    session_expiry_s: z.number().int().min(1).max(SESSION_NEVER_EXPIRES).optional(),
    /**
     * MQTT 5: most unacknowledged QoS 1 messages the broker may have in flight to the
     * source. The source handles one at a time; the rest wait in the socket, so this
     * bounds memory at about receive_maximum × the largest message.
     */
    receive_maximum: z.number().int().min(1).max(65_535).optional(),
    /** MQTT keepalive, in seconds. */
    keepalive_s: z.number().int().min(1).max(65_535).default(60),
    /** How long start() waits for the broker's CONNACK (and SUBACK) before failing, in ms. */
    connect_timeout_ms: z.number().int().min(100).max(600_000).default(10_000),
    /** Wait between reconnection attempts after the connection is lost, in ms. */
    reconnect_period_ms: z.number().int().min(100).max(600_000).default(1_000),
    /**
     * Record retained messages the broker sends because a subscription was made (current
     * values, published before). Off: only messages published while subscribed are
     * recorded (a retained message published then is recorded like any other).
     */
    include_retained: z.boolean().default(false),
    /** The kind of every event. */
    kind: z.string().regex(KIND, "may hold only letters, digits and . _ : / - (at most 128)").default("mqtt.message"),
    /**
     * payload_type for messages without an MQTT 5 content type (e.g. "application/json"
     * when the topics carry JSON). A message that does not parse as declared JSON is
     * recorded as application/octet-stream instead of being refused by the ledger.
     */
    payload_type: z.string().max(128, "at most 128 characters").regex(MEDIA_TYPE, 'must be a media type such as "application/json"').default("application/octet-stream"),
  })
  .superRefine((c, ctx) => {
    if (c.password !== undefined && c.password_env !== undefined) {
      ctx.addIssue({ code: "custom", path: ["password_env"], message: "give password or password_env, not both" });
    }
    if (c.protocol_version === 4) {
      if ((c.password !== undefined || c.password_env !== undefined) && c.username === undefined) {
        ctx.addIssue({ code: "custom", path: ["username"], message: "MQTT 3.1.1 sends a password only with a username" });
      }
      for (const key of ["session_expiry_s", "receive_maximum"] as const) {
        if (c[key] !== undefined) ctx.addIssue({ code: "custom", path: [key], message: "is an MQTT 5 setting; set protocol_version: 5" });
      }
    }
  });

export type MqttConfigInput = z.input<typeof mqttConfigSchema>;
export type MqttConfig = z.output<typeof mqttConfigSchema>;
