// A source's event as the ledger's EventInput, for daemon and server-side agents alike.
// The idempotency key is ZID + source + position (SPEC §4), so a replay after any
// crash dedups in the chain. Fields are put in the exact form the entry will hold
// (UTC milliseconds, explicit payload type), because the batch signature covers them.
import { create } from "@bufbuild/protobuf";
import { EventInputSchema, type EventInput } from "../../gen/auditledger/v1/entry_pb.js";
import type { SourceEvent, SourcePosition } from "../sources/source.js";

export interface EventOrigin {
  zid: string;
  /** The source's configured name, unique within its agent. */
  sourceName: string;
  sourceType: string;
}

export function idempotencyKeyOf(origin: EventOrigin, position: SourcePosition): string {
  return `${origin.zid}/${origin.sourceName}/${position}`;
}

export function toEventInput(ev: SourceEvent, origin: EventOrigin, salt?: Uint8Array): EventInput {
  const payload = ev.payload && ev.payload.length > 0 ? ev.payload : undefined;
  return create(EventInputSchema, {
    occurredAt: ev.occurredAt ? new Date(ev.occurredAt).toISOString() : "",
    sourceType: origin.sourceType,
    kind: ev.kind,
    subject: ev.subject ?? "",
    actor: ev.actor ?? "",
    traceId: ev.traceId ?? "",
    spanId: ev.spanId ?? "",
    idempotencyKey: idempotencyKeyOf(origin, ev.position),
    sourcePosition: ev.position,
    payloadType: payload ? ev.payloadType || "application/json" : "",
    payload: payload ?? new Uint8Array(0),
    payloadSalt: payload && salt ? salt : new Uint8Array(0),
  });
}

/**
 * The `gap` event a source records when events were lost or upstream history is gone
 * (SPEC §4: never silent loss). Its position is unique, so every gap is kept.
 */
export function gapEvent(reason: string, from?: SourcePosition, to?: SourcePosition, now = new Date()): SourceEvent {
  const body: Record<string, string> = { reason };
  if (from !== undefined) body.from = from;
  if (to !== undefined) body.to = to;
  return {
    kind: "gap",
    position: `gap@${now.toISOString()}#${Math.random().toString(36).slice(2, 10)}`,
    occurredAt: now.toISOString(),
    payloadType: "application/json",
    payload: new TextEncoder().encode(JSON.stringify(body)),
  };
}
