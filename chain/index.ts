// The chain: canonical encoding, hashing and verification, with no I/O.
// Shared by the server, the CLI verifier and the browser.
export * from "./envelope.js";
export * from "./canonical-json.js";
export * from "./entry-hash.js";
export * from "./payload-digest.js";
export * from "./chain-walk.js";
export * from "./hex.js";
export * from "./base64.js";
export * from "./merkle-hash.js";
export * from "./merkle-node.js";
export * from "./merkle-frontier.js";
export * from "./merkle-proof.js";
export * from "./signed-note.js";
export * from "./checkpoint.js";
export * from "./evidence-bundle.js";
export * from "./agent-zid.js";
export * from "./agent-batch.js";
