// Positions: `<generation>:<id>@<digest>`, or `<generation>:@<digest>` for an item
// without an id (or with an id longer than 64 characters, or holding spaces or control
// characters, kept out to bound the idempotency key). The generation counts the polls
// that reported something and is persisted with the state, so after a crash the same
// item version in the same poll gets the same position again (the idempotency key
// dedups it), while an item that returns to an earlier version (A → B → A) gets a new
// one and is recorded, not mistaken for the first A. Within one generation the digest
// alone is unique: a poll reports each content at most once.

const ID_IN_POSITION = /^[\x21-\x7e]{1,64}$/;
const GENERATION = /^(0|[1-9][0-9]{0,15}):/;

export function formatPosition(generation: number, id: string | undefined, digest: string): string {
  const shownId = id !== undefined && ID_IN_POSITION.test(id) ? id : "";
  return `${generation}:${shownId}@${digest}`;
}

/** The generation of one of this source's positions, or undefined for anything else. */
export function generationOf(position: string): number | undefined {
  const match = GENERATION.exec(position);
  return match ? Number(match[1]) : undefined;
}
