// What one outbox record holds: the source's name (to acknowledge it upstream) and
// the EventInput exactly as it will be sent, salt included, so a resend after a crash
// is byte-identical and signs to the same commitment.
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { EventInputSchema, type EventInput } from "../../gen/auditledger/v1/entry_pb.js";

export interface OutboxEvent {
  sourceName: string;
  input: EventInput;
}

/** [1 byte name length][name, UTF-8][EventInput, protobuf binary]. */
export function encodeOutboxEvent(e: OutboxEvent): Uint8Array {
  const name = new TextEncoder().encode(e.sourceName);
  if (name.length > 255) throw new RangeError(`source name "${e.sourceName}" is over 255 bytes`);
  const body = toBinary(EventInputSchema, e.input);
  const out = new Uint8Array(1 + name.length + body.length);
  out[0] = name.length;
  out.set(name, 1);
  out.set(body, 1 + name.length);
  return out;
}

export function decodeOutboxEvent(bytes: Uint8Array): OutboxEvent {
  const n = bytes[0]!;
  return {
    sourceName: new TextDecoder().decode(bytes.subarray(1, 1 + n)),
    input: fromBinary(EventInputSchema, bytes.subarray(1 + n)),
  };
}
