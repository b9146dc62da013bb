// The s3_notification source type (SPEC §4): reads S3 event notifications from SQS,
// records one event per S3 event record, and deletes a message only once all its
// events are durable in the agent's outbox, extending its visibility meanwhile. Runs in
// the daemon, with @aws-sdk/client-sqs. See docs/sources/s3-notification.md.
import type { SourceFactory } from "../source-factory.js";
import { s3NotificationConfigSchema, type S3NotificationConfig, type S3NotificationConfigInput } from "./config.js";
import { S3NotificationSource, SOURCE_TYPE } from "./s3-notification-source.js";

const s3NotificationSource: SourceFactory<S3NotificationConfig> = {
  type: SOURCE_TYPE,
  configSchema: s3NotificationConfigSchema,
  create: (config, ctx) => new S3NotificationSource(config, ctx),
};

export default s3NotificationSource;
export { s3NotificationConfigSchema, S3NotificationSource };
export type { S3NotificationConfig, S3NotificationConfigInput };
