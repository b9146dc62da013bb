// Realistic audit events: an order service reporting what happened to orders, with a
// JSON payload of ~200-300 bytes. Deterministic in `n`, so runs are comparable.
import { create } from "@bufbuild/protobuf";
import { EventInputSchema, type EventInput } from "../gen/auditledger/v1/entry_pb.js";

const KINDS = ["order.created", "order.paid", "order.shipped", "order.refunded", "customer.updated", "invoice.issued"];
const COUNTRIES = ["DE", "FR", "NL", "US", "GB", "SE", "IT", "ES"];
const METHODS = ["card", "sepa_debit", "paypal", "invoice"];
const encoder = new TextEncoder();

export function eventPayload(n: number): Uint8Array {
  const items = 1 + (n % 3);
  const doc = {
    order_id: `ord_${(100_000 + n).toString(36)}`,
    customer_id: `cus_${((n * 7919) % 1_000_003).toString(36).padStart(6, "0")}`,
    amount_cents: 1999 + ((n * 37) % 90_000),
    currency: "EUR",
    payment_method: METHODS[n % METHODS.length],
    items: Array.from({ length: items }, (_, i) => ({ sku: `SKU-${(n + i * 131) % 5000}`, qty: 1 + ((n + i) % 4) })),
    shipping: { country: COUNTRIES[n % COUNTRIES.length], express: n % 5 === 0 },
    ip: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`,
  };
  return encoder.encode(JSON.stringify(doc));
}

/** Event number `n`; `keyPrefix` keeps idempotency keys unique across phases. */
export function benchEvent(n: number, keyPrefix: string): EventInput {
  return create(EventInputSchema, {
    occurredAt: new Date(Date.UTC(2026, 10, 22) + n * 13).toISOString(),
    kind: KINDS[n % KINDS.length]!,
    subject: `orders/${n % 50_000}`,
    actor: `user-${n % 997}@example.com`,
    idempotencyKey: `${keyPrefix}-${n}`,
    sourcePosition: `orders-svc:${n}`,
    payloadType: "application/json",
    payload: eventPayload(n),
  });
}

export function benchBatch(first: number, size: number, keyPrefix: string): EventInput[] {
  return Array.from({ length: size }, (_, i) => benchEvent(first + i, keyPrefix));
}
