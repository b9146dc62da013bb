// LSN text as Postgres prints it, both ways, and the error for text that is not one.
import { expect, it } from "vitest";
import { formatLsn, parseLsn } from "./lsn.js";

it("parses and prints LSNs as Postgres does", () => {
  expect(parseLsn("16/B374D848")).toBe(0x16b374d848n);
  expect(formatLsn(0x16b374d848n)).toBe("16/B374D848");
  expect(formatLsn(parseLsn("0/0"))).toBe("0/0");
  expect(formatLsn(parseLsn("ffffffff/ffffffff"))).toBe("FFFFFFFF/FFFFFFFF");
  expect(() => parseLsn("16B374D848")).toThrow(/"16B374D848" is not a Postgres LSN/);
  expect(() => formatLsn(-1n)).toThrow(/outside the 64-bit LSN range/);
});
