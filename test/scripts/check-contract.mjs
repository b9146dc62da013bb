// Fails when gen/ is not exactly what `buf generate` makes from proto/, or when
// `buf lint` / `buf format` complain. Runs before the tests.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const buf = (args, opts = {}) => execFileSync("npx", ["--no-install", "buf", ...args], { stdio: ["ignore", "pipe", "pipe"], ...opts });
const fail = (msg) => {
  console.error(`contract check failed: ${msg}`);
  process.exit(1);
};

try {
  buf(["lint"]);
} catch (err) {
  fail(`buf lint:\n${err.stdout}${err.stderr}`);
}
try {
  buf(["format", "--diff", "--exit-code"]);
} catch (err) {
  fail(`buf format (run "npx buf format -w"):\n${err.stdout}${err.stderr}`);
}

const out = mkdtempSync(join(tmpdir(), "gen-check-"));
try {
  const template = readFileSync("buf.gen.yaml", "utf8").replace(/out: gen\b/, `out: ${out}`);
  const templateFile = join(out, "buf.gen.check.yaml");
  writeFileSync(templateFile, template.replace("clean: true", "clean: false"));
  buf(["generate", "--template", templateFile]);
  const list = (dir) =>
    readdirSync(dir).flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? list(p) : [p];
    });
  const fresh = new Map(list(out).filter((p) => p !== templateFile).map((p) => [relative(out, p), readFileSync(p, "utf8")]));
  const committed = new Map(list("gen").map((p) => [relative("gen", p), readFileSync(p, "utf8")]));
  const problems = [];
  for (const [file, text] of fresh) {
    if (!committed.has(file)) problems.push(`missing gen/${file}`);
    else if (committed.get(file) !== text) problems.push(`gen/${file} differs from buf generate`);
  }
  for (const file of committed.keys()) if (!fresh.has(file)) problems.push(`gen/${file} is not generated from proto/`);
  if (problems.length > 0) fail(`${problems.join("\n")}\nRun "npm run generate" and commit gen/.`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
console.log("contract check: buf lint, buf format and gen/ are clean");
