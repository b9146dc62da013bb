// What an `http_webhook` agent is spawned with (SpawnAgent config_json).
import { z } from "zod";
import { standardWebhooksKey, WEBHOOK_SCHEMES } from "./webhook-signatures.js";

export const webhookConfigSchema = z
  .object({
    /** Shared secret; with it, every request must carry a valid signature. */
    secret: z.string().min(1).optional(),
    /** Which provider's signature header to check (default generic). */
    scheme: z.enum(WEBHOOK_SCHEMES).default("generic"),
    /** Stripe, Slack, Standard Webhooks: how old (or early) a timestamp may be. */
    tolerance_seconds: z.number().int().min(1).max(86_400).default(300),
    /** Bodies over this get 413; at most the server's payload limit. */
    max_body_bytes: z.number().int().min(1).optional(),
    /** Entry kind when the provider's own event name is not available. */
    kind: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/).max(128).default("webhook.received"),
    /** Entry subject; default "hooks/<zid>". */
    subject: z.string().min(1).max(1024).optional(),
  })
  .strict()
  .refine((c) => c.scheme === "generic" || c.secret !== undefined, { message: "a scheme other than generic needs a secret", path: ["secret"] })
  // A whsec_ secret that does not decode would make every delivery fail with 401: refuse it at spawn.
  .refine((c) => c.scheme !== "standard" || c.secret === undefined || standardWebhooksKey(c.secret) !== undefined, {
    message: 'a Standard Webhooks secret starting with "whsec_" must be base64 after the prefix',
    path: ["secret"],
  });

export type WebhookConfig = z.infer<typeof webhookConfigSchema>;
