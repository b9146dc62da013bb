// Standard base64 (RFC 4648 §4, with padding), as C2SP notes use it. btoa/atob exist
// in Node 20 and every browser, so the chain module needs no Buffer.

export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]!);
  return btoa(bin);
}

/** Decodes canonical standard base64; throws on anything else (no URL alphabet, no spaces). */
export function fromBase64(text: string): Uint8Array {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new Error(`not standard base64: ${text.slice(0, 24)}`);
  }
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (toBase64(out) !== text) throw new Error(`not canonical base64: ${text.slice(0, 24)}`);
  return out;
}
