// Invalid UTF-8 inside a protobuf string must be InvalidArgument, like every other bad
// input. connect-es reports any binary parse failure as Internal, so instead of failing
// the parse we decode leniently and append a lone surrogate, which no valid UTF-8 can
// produce; request validation (String#isWellFormed) then refuses the field by name.
import { configureTextEncoding, getTextEncoding } from "@bufbuild/protobuf/wire";

const INVALID_UTF8_MARK = "\uDFFF";

let installed = false;

export function installUtf8Policy(): void {
  if (installed) return;
  installed = true;
  const base = getTextEncoding();
  const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  configureTextEncoding({
    ...base,
    decodeUtf8(bytes: Uint8Array, strictRequested?: boolean) {
      if (!strictRequested) return lenient.decode(bytes);
      try {
        return strict.decode(bytes);
      } catch {
        return lenient.decode(bytes) + INVALID_UTF8_MARK;
      }
    },
  } as Parameters<typeof configureTextEncoding>[0]);
}
