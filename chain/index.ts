// The chain: canonical encoding, hashing and verification, with no I/O.
// Shared by the server, the CLI verifier and the browser.
export * from "./envelope.js";
export * from "./canonical-json.js";
export * from "./entry-hash.js";
export * from "./payload-digest.js";
export * from "./chain-walk.js";
export * from "./hex.js";
