// The checkpoint signing key of every benchmark server and of the chain loader: one
// folder and one key name, so that checkpoints the loader signs verify on the bench
// server, in this run and in later runs on a kept database (--database). Deleting the
// folder makes such a database's checkpoints unverifiable (Verify: bad_signature).
import { fileURLToPath } from "node:url";

export const BENCH_KEYS = {
  /** <repo>/.data/bench-keys (git-ignored), created 0700 with a first key on first use. */
  dir: fileURLToPath(new URL("../.data/bench-keys", import.meta.url)),
  /** Key name and origin prefix: checkpoints of chain C carry origin "<name>/C". */
  name: "bench.audit-ledger.local",
};
