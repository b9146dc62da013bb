// The `subject` of each event: a template such as "orders/{id}" with the placeholders
// {id} (the item's id, or its digest when it has none) and {digest} (SHA-256 of the
// item's canonical JSON). Without a template: "<url without query>#<id or digest>".

const PLACEHOLDER = /\{([^{}]*)\}/g;
const KNOWN = new Set(["id", "digest"]);
/** The ledger's limit on a subject (server/ledger/limits.ts FIELD_MAX_LENGTH.subject). */
export const SUBJECT_MAX_LENGTH = 1024;

/** Why `template` is unusable, or undefined when it is fine. */
export function subjectTemplateProblem(template: string): string | undefined {
  if (template === "") return "must not be empty";
  for (const match of template.matchAll(PLACEHOLDER)) {
    if (!KNOWN.has(match[1]!)) return `unknown placeholder {${match[1]}}; only {id} and {digest} are known`;
  }
  const stripped = template.replace(PLACEHOLDER, "");
  if (stripped.includes("{") || stripped.includes("}")) return "has an unmatched { or }";
  return undefined;
}

export type SubjectOf = (item: { id: string | undefined; digest: string }) => string;

/** Builds the subject function; `baseUrl` is the default's prefix (no credentials or query). */
export function subjectFunction(template: string | undefined, baseUrl: string): SubjectOf {
  if (template === undefined) return ({ id, digest }) => clamp(`${baseUrl}#${id ?? digest}`);
  return ({ id, digest }) => clamp(template.replace(PLACEHOLDER, (_, name: string) => (name === "id" ? (id ?? digest) : digest)));
}

/** Subjects longer than the ledger accepts are cut (on a code point boundary), never refused. */
function clamp(subject: string): string {
  const wellFormed = subject.toWellFormed();
  if (wellFormed.length <= SUBJECT_MAX_LENGTH) return wellFormed;
  let cut = wellFormed.slice(0, SUBJECT_MAX_LENGTH);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return cut;
}
