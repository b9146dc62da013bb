// The generic_polling source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about.
import { z } from "zod";
import { parseDotPath } from "./dot-path.js";
import { subjectTemplateProblem } from "./subject-template.js";

/** What the ledger accepts as a kind (server/ledger/validate-event.ts), leaving room for ".created". */
const KIND_PREFIX = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,100}$/;

const httpUrl = z.string().superRefine((text, ctx) => {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    ctx.addIssue({ code: "custom", message: `"${text.slice(0, 80)}" is not a URL` });
    return;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    ctx.addIssue({ code: "custom", message: `must be an http:// or https:// URL, not ${url.protocol}//` });
  }
  if (url.username !== "" || url.password !== "") {
    ctx.addIssue({ code: "custom", message: "must not contain user:password; put credentials in headers (e.g. Authorization)" });
  }
});

const dotPath = z.string().refine((text) => parseDotPath(text) !== undefined, {
  message: 'must be a dot path such as "data.items" (no empty segments)',
});

const headers = z.record(z.string(), z.string()).superRefine((value, ctx) => {
  for (const [name, text] of Object.entries(value)) {
    try {
      new Headers([[name, text]]);
    } catch {
      ctx.addIssue({ code: "custom", path: [name], message: `"${name}" is not a valid header name, or its value holds a forbidden character` });
    }
    if (/^(if-none-match|if-modified-since)$/i.test(name)) {
      ctx.addIssue({ code: "custom", path: [name], message: `"${name}" is set by the source itself (conditional requests)` });
    }
  }
});

export const genericPollingConfigSchema = z.strictObject({
  /** The endpoint polled with GET; its JSON response holds the items. */
  url: httpUrl,
  /** Time between polls after a success, in ms. */
  interval_ms: z.number().int().min(100).default(60_000),
  /** Extra request headers, e.g. Authorization. */
  headers: headers.optional(),
  /** Dot path to the item array; default: the response if it is an array, else its `items`. */
  items_path: dotPath.optional(),
  /** Dot path to each item's id; without it, items are told apart by content digest. */
  id_field: dotPath.optional(),
  /** Kinds are `<prefix>.created`, `<prefix>.changed`, `<prefix>.seen`. */
  kind_prefix: z.string().regex(KIND_PREFIX, "may hold only letters, digits and . _ : / - (at most 101)").default("item"),
  /** Subject of each event, with {id} and {digest}; default "<url>#<id or digest>". */
  subject_template: z
    .string()
    .superRefine((text, ctx) => {
      const problem = subjectTemplateProblem(text);
      if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional(),
  /** Limit on one request, body included, in ms. */
  timeout_ms: z.number().int().min(100).default(10_000),
  /** Longest wait between polls while errors continue, in ms (never below interval_ms). */
  max_backoff_ms: z.number().int().min(100).default(300_000),
  /** Largest response body accepted; a larger one is an error, not a crash. */
  max_response_bytes: z.number().int().min(1).default(10 * 1024 * 1024),
});

export type GenericPollingConfigInput = z.input<typeof genericPollingConfigSchema>;
export type GenericPollingConfig = z.output<typeof genericPollingConfigSchema>;
