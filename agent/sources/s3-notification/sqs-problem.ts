// SQS and SDK errors in words an operator can act on: which queue, which endpoint,
// which credentials, which permission.

const CREDENTIAL_REFUSALS = new Set([
  "InvalidClientTokenId",
  "UnrecognizedClientException",
  "SignatureDoesNotMatch",
  "IncompleteSignature",
  "InvalidSecurity",
  "ExpiredToken",
  "ExpiredTokenException",
  "MissingAuthenticationToken",
]);
const NETWORK_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "EPIPE", "CERT_HAS_EXPIRED", "DEPTH_ZERO_SELF_SIGNED_CERT", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"]);

/** Where the source talks to, for messages: the endpoint, or the region's AWS endpoint. */
export interface SqsTarget {
  /** The queue as configured: its URL or its name. */
  queue: string;
  /** The configured endpoint, or "AWS SQS in <region>". */
  service: string;
}

/** The SDK error's name or code (QueueDoesNotExist, AccessDenied, ECONNREFUSED...). */
export function errorCode(err: unknown): string {
  const e = err as { name?: unknown; code?: unknown; Code?: unknown; cause?: { code?: unknown } };
  for (const c of [e.code, e.cause?.code, e.name, e.Code]) {
    // AWS JSON protocol codes come qualified: "com.amazonaws.sqs#QueueDoesNotExist".
    if (typeof c === "string" && c !== "" && c !== "Error") return c.slice(c.lastIndexOf("#") + 1);
  }
  return "Error";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** One sentence saying what went wrong talking to SQS, naming the queue or endpoint. */
export function describeSqsProblem(err: unknown, target: SqsTarget): string {
  const code = errorCode(err);
  const message = errorMessage(err);
  if (code === "QueueDoesNotExist" || code === "AWS.SimpleQueueService.NonExistentQueue") {
    return `queue ${target.queue} does not exist (${target.service}); create it, or fix queue_url / queue_name and region`;
  }
  if (code === "CredentialsProviderError") {
    return `no AWS credentials found (${message}): set access_key_id and secret_access_key_env, or give them the SDK's usual way (AWS_ACCESS_KEY_ID, a profile, an instance role)`;
  }
  if (CREDENTIAL_REFUSALS.has(code)) {
    return `${target.service} refused the credentials (${code}): ${message}`;
  }
  if (code === "AccessDenied" || code === "AccessDeniedException" || code === "KMS.AccessDeniedException") {
    return `access denied to queue ${target.queue} (${code}: ${message}); the agent needs sqs:GetQueueUrl, sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:ChangeMessageVisibility and sqs:DeleteMessage on it`;
  }
  if (NETWORK_CODES.has(code)) {
    return `cannot reach ${target.service}: ${message}`;
  }
  if (code === "TimeoutError" || code === "AbortError" || code === "RequestTimeout") {
    return `no answer from ${target.service}: ${message}`;
  }
  if (/region is missing/i.test(message)) {
    return "no AWS region: set region in the source's configuration (or AWS_REGION)";
  }
  return `${target.service} answered ${code}: ${message}`;
}
