-- A payload may be deleted only when the chain itself records its erasure: a
-- `redaction` entry, committed in the same transaction or earlier, whose cause is the
-- erased seq. A redactions row alone (which the server role may insert) is not enough.
CREATE OR REPLACE FUNCTION audit_ledger_payload_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (
    SELECT 1 FROM redactions r
    JOIN entries e ON e.chain = r.chain AND e.seq = r.redaction_seq
    WHERE r.chain = OLD.chain AND r.seq = OLD.seq
      AND r.redaction_seq > OLD.seq
      AND e.kind = 'redaction' AND e.cause = OLD.seq::text
  ) THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit-ledger: DELETE on payloads is refused: seq % has no recorded redaction', OLD.seq
    USING ERRCODE = 'insufficient_privilege';
END
$$;
