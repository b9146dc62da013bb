// Cuts signed checkpoints: at least once a second for every chain whose head moved,
// and on demand. Before signing it proves the new tree consistent with the previous
// checkpoint from the stored nodes, so it never signs two inconsistent trees; a
// refusal means the store was tampered with and is logged loudly.
import { Code, ConnectError } from "@connectrpc/connect";
import { checkConsistency, equalBytes, keyIdHex, openCheckpoint, ProofError, signCheckpoint, toHex } from "../../chain/index.js";
import type { Database, Queryable } from "../storage/database.js";
import type { Logger } from "../ops/logger.js";
import type { LedgerMetrics } from "../ops/metrics.js";
import { consistencyProof, MissingNodeError, rootAt, toBytes } from "../merkle/tree-store.js";
import type { KeyRing } from "./key-ring.js";

export interface StoredCheckpoint {
  chain: string;
  origin: string;
  treeSize: number;
  root: Uint8Array;
  note: string;
  keyId: string;
  cutAt: Date;
}

interface CheckpointRow {
  chain: string;
  tree_size: string | number;
  root: Uint8Array;
  note: string;
  key_id: string;
  cut_at: Date;
}

const CHECKPOINT_COLUMNS = "chain, tree_size, root, note, key_id, cut_at";

function fromRow(r: CheckpointRow, origin: string): StoredCheckpoint {
  return { chain: r.chain, origin, treeSize: Number(r.tree_size), root: toBytes(r.root), note: r.note, keyId: r.key_id, cutAt: r.cut_at };
}

/** The checkpoint origin line of a chain: "<key name>/<chain>". */
export function originOf(keyName: string, chain: string): string {
  return `${keyName}/${chain}`;
}

export async function latestCheckpoint(q: Queryable, chain: string, origin: string): Promise<StoredCheckpoint | null> {
  const res = await q.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM checkpoints WHERE chain = $1 ORDER BY tree_size DESC LIMIT 1`, [chain]);
  return res.rows[0] ? fromRow(res.rows[0], origin) : null;
}

export async function checkpointAt(q: Queryable, chain: string, size: number, origin: string): Promise<StoredCheckpoint | null> {
  const res = await q.query<CheckpointRow>(`SELECT ${CHECKPOINT_COLUMNS} FROM checkpoints WHERE chain = $1 AND tree_size = $2`, [chain, size]);
  return res.rows[0] ? fromRow(res.rows[0], origin) : null;
}

/** The smallest checkpoint with size > `size`, if any. */
export async function firstCheckpointAbove(q: Queryable, chain: string, size: number, origin: string): Promise<StoredCheckpoint | null> {
  const res = await q.query<CheckpointRow>(
    `SELECT ${CHECKPOINT_COLUMNS} FROM checkpoints WHERE chain = $1 AND tree_size > $2 ORDER BY tree_size LIMIT 1`,
    [chain, size],
  );
  return res.rows[0] ? fromRow(res.rows[0], origin) : null;
}

/** Checkpoints with from < size <= to, ascending. */
export async function checkpointsBetween(q: Queryable, chain: string, from: number, to: number, origin: string): Promise<StoredCheckpoint[]> {
  const res = await q.query<CheckpointRow>(
    `SELECT ${CHECKPOINT_COLUMNS} FROM checkpoints WHERE chain = $1 AND tree_size > $2 AND tree_size <= $3 ORDER BY tree_size`,
    [chain, from, to],
  );
  return res.rows.map((r) => fromRow(r, origin));
}

export interface CheckpointerOptions {
  intervalMs: number;
  logger: Logger;
  metrics: LedgerMetrics;
}

export class Checkpointer {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly db: Database,
    readonly keys: KeyRing,
    private readonly options: CheckpointerOptions,
  ) {}

  origin(chain: string): string {
    return originOf(this.keys.name, chain);
  }

  start(): void {
    if (this.options.intervalMs <= 0) return;
    this.timer = setInterval(() => {
      // Never overlap rounds: a slow round simply delays the next.
      this.running ??= this.cutDue()
        .catch((err: unknown) => this.options.logger.error({ err }, "checkpoint round failed"))
        .finally(() => {
          this.running = null;
        });
    }, this.options.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Cuts a checkpoint for every chain whose head is past its latest checkpoint. */
  async cutDue(): Promise<void> {
    // Each round picks up a rotated key, even when no chain is due.
    await this.keys.reloadIfChanged();
    // Every chain whose head differs from its latest checkpoint's size, either way: a
    // checkpoint larger than the head is a refusal for cut() to raise, not a chain to skip.
    const due = await this.db.query<{ chain: string }>(
      `SELECT c.chain FROM chains c
       WHERE c.tree_root IS NOT NULL
         AND c.next_seq <> COALESCE((SELECT max(k.tree_size) FROM checkpoints k WHERE k.chain = c.chain), 0)`,
    );
    for (const { chain } of due.rows) {
      try {
        await this.cut(chain);
      } catch (err) {
        // Refusals are logged loudly and counted by cut(); anything else is logged here.
        // Either way the other chains still get their checkpoints.
        if (!(err instanceof ConnectError && err.code === Code.DataLoss)) this.options.logger.error({ err, chain }, "checkpoint failed");
      }
    }
  }

  /**
   * Signs a checkpoint over the chain's current tree, unless the latest one already
   * covers the head, and returns the latest checkpoint. Throws DataLoss, and signs
   * nothing, when the stored tree does not extend the previous checkpoint.
   */
  async cut(chain: string): Promise<StoredCheckpoint | null> {
    const origin = this.origin(chain);
    // A key added since (rotation) signs from the very next checkpoint, on demand too.
    await this.keys.reloadIfChanged();
    return this.db.transaction(async (tx) => {
      // One cutter per chain across replicas; appends are not blocked.
      await tx.query("SELECT pg_advisory_xact_lock(hashtextextended('audit-ledger checkpoint ' || $1, 0))", [chain]);
      const previous = await latestCheckpoint(tx, chain, origin);
      const head = await tx.query<{ next_seq: string | number; tree_root: Uint8Array | null }>(
        "SELECT next_seq, tree_root FROM chains WHERE chain = $1",
        [chain],
      );
      const size = Number(head.rows[0]?.next_seq ?? 0);
      // Size and root of the previous checkpoint come from its signed note, never from
      // columns an attacker could have edited.
      let signed: { size: number; root: Uint8Array } | null = null;
      if (previous) {
        try {
          const opened = openCheckpoint(previous.note, this.keys.verifiers(), origin);
          signed = { size: opened.size, root: opened.root };
        } catch (err) {
          this.refuse(chain, `the latest stored checkpoint (size ${previous.treeSize}) does not verify: ${(err as Error).message}`);
        }
        if (signed.size !== previous.treeSize) {
          this.refuse(chain, `the latest stored checkpoint says size ${previous.treeSize} but its signed note says ${signed.size}`);
        }
        if (size < signed.size) {
          this.refuse(chain, `the chain has ${size} entries but checkpoint ${signed.size} was signed: entries were removed`);
        }
      }
      if (size === 0) return previous;
      if (previous && size === signed!.size) return previous;
      if (!head.rows[0]!.tree_root && !previous) {
        // Sequenced before the tree existed (schema 0001): not tampering, just not built.
        throw new ConnectError(`chain ${chain} has no Merkle tree yet: its next append builds it`, Code.FailedPrecondition);
      }
      const root = await rootAt(tx, chain, size).catch((err: unknown) => {
        if (err instanceof MissingNodeError) this.refuse(chain, err.message);
        throw err;
      });
      const storedRoot = head.rows[0]!.tree_root;
      if (!storedRoot || !equalBytes(toBytes(storedRoot), root)) {
        this.refuse(chain, `the chain head's tree root differs from the root of the stored nodes at size ${size}`);
      }
      if (signed) {
        const proof = await consistencyProof(tx, chain, signed.size, size).catch((err: unknown) => {
          if (err instanceof MissingNodeError) this.refuse(chain, err.message);
          throw err;
        });
        try {
          checkConsistency(signed.size, size, signed.root, root, proof);
        } catch (err) {
          if (!(err instanceof ProofError)) throw err;
          this.refuse(chain, `the tree of ${size} entries is not consistent with signed checkpoint ${signed.size}: ${err.message}`);
        }
      }
      const signer = this.keys.active();
      const note = signCheckpoint({ origin, size, root, extensions: [] }, signer);
      const inserted = await tx.query<CheckpointRow>(
        `INSERT INTO checkpoints (chain, tree_size, root, key_id, note) VALUES ($1, $2, decode($3, 'hex'), $4, $5) RETURNING ${CHECKPOINT_COLUMNS}`,
        [chain, size, toHex(root), keyIdHex(signer.keyId), note],
      );
      this.options.metrics.checkpointsCut.inc();
      return fromRow(inserted.rows[0]!, origin);
    });
  }

  private refuse(chain: string, why: string): never {
    this.options.metrics.checkpointRefusals.inc({ chain });
    this.options.logger.error({ chain, alert: "tamper" }, `refusing to sign a checkpoint: ${why}`);
    throw new ConnectError(`chain ${chain}: refusing to sign a checkpoint: ${why}`, Code.DataLoss);
  }
}
