// The pgoutput decoder on bytes the real server produced: pg_logical_slot_peek_binary_changes
// returns exactly what START_REPLICATION sends inside XLogData, without a replication
// connection. Plus the errors malformed messages get.
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import pg from "pg";
import { decodePgOutput, type PgOutputMessage } from "./pgoutput-decoder.js";
import { parseLsn } from "./lsn.js";

const suffix = `${process.pid}_${Date.now().toString(36)}`;
const TABLE = `dec_${suffix}`;
const PUB = `dec_pub_${suffix}`;
const SLOT = `dec_slot_${suffix}`;
let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: inject("pgLogicalUrl") });
  await client.connect();
  await client.query(`CREATE TABLE ${TABLE} (id int PRIMARY KEY, name text, n int)`);
  await client.query(`CREATE TABLE ${TABLE}_full (id int PRIMARY KEY, name text)`);
  await client.query(`ALTER TABLE ${TABLE}_full REPLICA IDENTITY FULL`);
  await client.query(`CREATE PUBLICATION ${PUB} FOR TABLE ${TABLE}, ${TABLE}_full`);
  await client.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [SLOT]);
});

afterAll(async () => {
  await client.query(`SELECT pg_drop_replication_slot($1)`, [SLOT]).catch(() => undefined);
  await client.query(`DROP PUBLICATION IF EXISTS ${PUB}`);
  await client.query(`DROP TABLE IF EXISTS ${TABLE}, ${TABLE}_full`);
  await client.end();
});

async function changes(): Promise<{ lsn: bigint; message: PgOutputMessage }[]> {
  const r = await client.query<{ lsn: string; data: Buffer }>(
    `SELECT lsn, data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, 'proto_version', '1', 'publication_names', $2)`,
    [SLOT, PUB],
  );
  return r.rows.map((row) => ({ lsn: parseLsn(row.lsn), message: decodePgOutput(row.data) }));
}

it("decodes Begin, Relation, Insert, Update, Delete, Truncate and Commit as the server sends them", async () => {
  await client.query("BEGIN");
  await client.query(`INSERT INTO ${TABLE} VALUES (1, 'a', NULL)`);
  await client.query(`UPDATE ${TABLE} SET name = 'b' WHERE id = 1`);
  await client.query(`UPDATE ${TABLE} SET id = 2 WHERE id = 1`);
  await client.query(`DELETE FROM ${TABLE} WHERE id = 2`);
  await client.query("COMMIT");
  await client.query(`TRUNCATE ${TABLE} RESTART IDENTITY CASCADE`);
  const got = await changes();
  const tags = got.map((c) => c.message.tag);
  expect(tags).toEqual(["begin", "relation", "insert", "update", "update", "delete", "commit", "begin", "relation", "truncate", "commit"]);
  const [begin, relation, insert, update, keyUpdate, del, commit] = got.map((c) => c.message);
  if (begin!.tag !== "begin" || commit!.tag !== "commit") throw new Error("unexpected order");
  expect(begin!.finalLsn).toBe(commit!.commitLsn);
  expect(commit!.endLsn).toBeGreaterThan(commit!.commitLsn);
  expect(begin!.commitTime).toBe(commit!.commitTime);
  expect(relation).toMatchObject({ tag: "relation", schema: "public", table: TABLE, replicaIdentity: "d" });
  if (relation!.tag !== "relation") throw new Error("no relation");
  expect(relation!.columns.map((c) => [c.name, c.isKey, c.typeOid])).toEqual([
    ["id", true, 23],
    ["name", false, 25],
    ["n", false, 23],
  ]);
  expect(insert).toEqual({ tag: "insert", relationId: relation!.relationId, newTuple: [{ kind: "text", text: "1" }, { kind: "text", text: "a" }, { kind: "null" }] });
  expect(update).toMatchObject({ tag: "update", newTuple: [{ kind: "text", text: "1" }, { kind: "text", text: "b" }, { kind: "null" }] });
  expect((update as { oldTuple?: unknown }).oldTuple).toBeUndefined();
  expect(keyUpdate).toMatchObject({ tag: "update", oldKind: "key", oldTuple: [{ kind: "text", text: "1" }, { kind: "null" }, { kind: "null" }] });
  expect(del).toMatchObject({ tag: "delete", oldKind: "key", oldTuple: [{ kind: "text", text: "2" }, { kind: "null" }, { kind: "null" }] });
  expect(got[9]!.message).toEqual({ tag: "truncate", cascade: true, restartIdentity: true, relationIds: [relation!.relationId] });
});

it("decodes whole old rows ('O') under REPLICA IDENTITY FULL, and unchanged TOASTed values as 'u'", async () => {
  const big = `(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 3000) g)`;
  await client.query(`INSERT INTO ${TABLE}_full VALUES (1, 'x')`);
  await client.query(`UPDATE ${TABLE}_full SET name = 'y'`);
  await client.query(`DELETE FROM ${TABLE}_full`);
  await client.query(`INSERT INTO ${TABLE} VALUES (5, ${big}, 1)`);
  await client.query(`UPDATE ${TABLE} SET n = 2 WHERE id = 5`);
  const got = (await changes()).map((c) => c.message).filter((m) => m.tag !== "begin" && m.tag !== "commit" && m.tag !== "relation");
  expect(got[0]).toMatchObject({ tag: "insert" });
  expect(got[1]).toMatchObject({ tag: "update", oldKind: "full", oldTuple: [{ kind: "text", text: "1" }, { kind: "text", text: "x" }] });
  expect(got[2]).toMatchObject({ tag: "delete", oldKind: "full", oldTuple: [{ kind: "text", text: "1" }, { kind: "text", text: "y" }] });
  expect(got[4]).toMatchObject({ tag: "update", newTuple: [{ kind: "text", text: "5" }, { kind: "unchanged-toast" }, { kind: "text", text: "2" }] });
});

it("names what is wrong with a malformed message", () => {
  expect(() => decodePgOutput(Buffer.alloc(0))).toThrow(/empty pgoutput message/);
  expect(() => decodePgOutput(Buffer.from("B\x00\x00", "latin1"))).toThrow(/pgoutput Begin message is truncated/);
  expect(() => decodePgOutput(Buffer.from("Z", "latin1"))).toThrow(/unknown pgoutput message type 'Z'/);
  const insert = Buffer.concat([Buffer.from("I"), Buffer.from([0, 0, 0, 1]), Buffer.from("N"), Buffer.from([0, 1]), Buffer.from("b"), Buffer.from([0, 0, 0, 0])]);
  expect(() => decodePgOutput(insert)).toThrow(/tuple column 0 has format 'b'/);
  const relation = Buffer.concat([Buffer.from("R"), Buffer.from([0, 0, 0, 1]), Buffer.from("public\0t")]);
  expect(() => decodePgOutput(relation)).toThrow(/unterminated string/);
});
