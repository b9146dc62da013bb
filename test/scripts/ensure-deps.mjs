// `npm test` on a fresh clone: install the dependencies first when they are missing or
// older than package-lock.json, so the README's test command works on its own.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const STAMP = "node_modules/.audit-ledger-lock.sha256";
const lockHash = () => createHash("sha256").update(readFileSync("package-lock.json")).digest("hex");
const installed = existsSync("node_modules/.package-lock.json") && existsSync(STAMP) && readFileSync(STAMP, "utf8") === lockHash();

if (!installed) {
  console.error("installing dependencies (node_modules missing or older than package-lock.json)");
  // Not `npm ci`: the registry here serves only this platform's optional @bufbuild/buf-* binaries.
  execFileSync("npm", ["install", "--no-audit", "--no-fund"], { stdio: "inherit" });
  writeFileSync(STAMP, lockHash());
}
