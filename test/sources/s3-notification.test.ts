// The s3_notification source end to end against ElasticMQ (an SQS endpoint), fed
// S3-shaped event notifications (test/sources/source-scenarios.ts).
import { describeSourceScenarios } from "./source-scenarios.js";
import { s3NotificationUpstream } from "./s3-notification.upstream.js";

describeSourceScenarios(s3NotificationUpstream);
