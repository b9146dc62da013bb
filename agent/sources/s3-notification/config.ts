// The s3_notification source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about.
import { z } from "zod";

/** SQS's own limits on ReceiveMessage and on a visibility timeout (12 hours). */
export const MAX_WAIT_TIME_S = 20;
export const MAX_MESSAGES_PER_RECEIVE = 10;
export const MAX_VISIBILITY_TIMEOUT_S = 43_200;
/**
 * Below this the heartbeat (every third of the timeout) would have to run more often
 * than an SQS round trip can be relied on to finish.
 */
export const MIN_VISIBILITY_TIMEOUT_S = 3;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** SQS queue names: 1-80 letters, digits, - and _, with .fifo at the end for FIFO queues. */
const QUEUE_NAME = /^[A-Za-z0-9_-]{1,80}$|^[A-Za-z0-9_-]{1,75}\.fifo$/;
const REGION = /^[a-z0-9-]{1,64}$/;

const httpUrl = (what: string) =>
  z.string().superRefine((text, ctx) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a URL; expected ${what}` });
      return;
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") ctx.addIssue({ code: "custom", message: `must be an https:// or http:// URL, not ${url.protocol}//` });
    if (url.username !== "" || url.password !== "") ctx.addIssue({ code: "custom", message: "must not contain user:password; use access_key_id and secret_access_key_env" });
  });

export const s3NotificationConfigSchema = z
  .strictObject({
    /** The queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/audit-s3. */
    queue_url: httpUrl("https://sqs.<region>.amazonaws.com/<account>/<queue>").optional(),
    /** The queue's name, looked up (GetQueueUrl) in `region` at `endpoint`. */
    queue_name: z.string().regex(QUEUE_NAME, "must be an SQS queue name: 1-80 letters, digits, - or _ (FIFO queues end in .fifo)").optional(),
    /** AWS region; default: taken from an AWS queue URL, else the SDK's (AWS_REGION, profile). */
    region: z.string().regex(REGION, 'must be an AWS region such as "eu-west-1"').optional(),
    /** SQS endpoint for SQS-compatible services and emulators (ElasticMQ, LocalStack); default: AWS. */
    endpoint: httpUrl("http://host:port").optional(),
    /** Static credentials: the access key id, with the secret read from `secret_access_key_env`. */
    access_key_id: z.string().min(1, "must not be empty").max(128, "at most 128 characters").optional(),
    /** The name of an environment variable holding the secret access key (read at start). */
    secret_access_key_env: z.string().regex(ENV_NAME, "must be an environment variable name").optional(),
    /** The name of an environment variable holding a session token, for temporary credentials. */
    session_token_env: z.string().regex(ENV_NAME, "must be an environment variable name").optional(),
    /** Long-polling wait of each ReceiveMessage, in seconds (0-20). */
    wait_time_s: z.number().int().min(0).max(MAX_WAIT_TIME_S, `at most ${MAX_WAIT_TIME_S} (SQS's limit)`).default(MAX_WAIT_TIME_S),
    /**
     * How long a received message stays hidden from other consumers, in seconds. The
     * source extends it every third of this while the message's events are not yet
     * durable, so it bounds how soon a message comes back after the agent crashes.
     */
    visibility_timeout_s: z
      .number()
      .int()
      .min(MIN_VISIBILITY_TIMEOUT_S, `at least ${MIN_VISIBILITY_TIMEOUT_S}`)
      .max(MAX_VISIBILITY_TIMEOUT_S, `at most ${MAX_VISIBILITY_TIMEOUT_S} (12 hours, SQS's limit)`)
      .default(60),
    /** Most messages per ReceiveMessage (1-10). */
    max_messages: z.number().int().min(1).max(MAX_MESSAGES_PER_RECEIVE, `at most ${MAX_MESSAGES_PER_RECEIVE} (SQS's limit)`).default(MAX_MESSAGES_PER_RECEIVE),
    /**
     * Most messages received and not yet deleted at once (their events handed over, not
     * yet acknowledged). Bounds memory and the visibility heartbeat's work.
     */
    max_in_flight: z.number().int().min(1).max(10_000).default(100),
    /**
     * true: every message is an SNS notification whose `Message` holds the S3 event
     * (S3 → SNS topic → SQS without raw message delivery). false: the body is the S3 event.
     */
    sns_envelope: z.boolean().default(false),
  })
  .superRefine((c, ctx) => {
    if ((c.queue_url === undefined) === (c.queue_name === undefined)) {
      ctx.addIssue({ code: "custom", path: ["queue_url"], message: "give queue_url or queue_name (exactly one)" });
    }
    if (c.access_key_id !== undefined && c.secret_access_key_env === undefined) {
      ctx.addIssue({ code: "custom", path: ["secret_access_key_env"], message: "access_key_id needs secret_access_key_env (the variable holding the secret)" });
    }
    if (c.access_key_id === undefined) {
      for (const key of ["secret_access_key_env", "session_token_env"] as const) {
        if (c[key] !== undefined) ctx.addIssue({ code: "custom", path: [key], message: "is used only with access_key_id" });
      }
    }
    if (c.max_in_flight < c.max_messages) {
      ctx.addIssue({ code: "custom", path: ["max_in_flight"], message: `must be at least max_messages (${c.max_messages})` });
    }
  });

export type S3NotificationConfigInput = z.input<typeof s3NotificationConfigSchema>;
export type S3NotificationConfig = z.output<typeof s3NotificationConfigSchema>;
