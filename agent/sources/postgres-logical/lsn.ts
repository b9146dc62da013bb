// Postgres log sequence numbers (LSNs): 64-bit WAL positions, written by Postgres as two
// hex halves, "16/B374D848". Held as bigint so comparisons and arithmetic are exact.

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** "16/B374D848" → 0x16B374D848n; throws naming the text when it is not an LSN. */
export function parseLsn(text: string): bigint {
  const m = LSN_TEXT.exec(text);
  if (!m) throw new Error(`"${text.slice(0, 40)}" is not a Postgres LSN (expected two hex halves, e.g. 16/B374D848)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** 0x16B374D848n → "16/B374D848", as Postgres prints it. */
export function formatLsn(lsn: bigint): string {
  if (lsn < 0n || lsn > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${lsn} is outside the 64-bit LSN range`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}
