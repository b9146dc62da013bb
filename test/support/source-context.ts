// The SourceContext a source's own tests give it: a name, a state folder, and a log that
// records every line so a test can assert what the source said.
import type { SourceContext } from "../../agent/sources/source-factory.js";

export interface LogLine {
  level: string;
  msg: string;
  obj: object;
}

export function recordingContext(name: string, stateDir: string, lines: LogLine[] = []): SourceContext {
  const line = (level: string) => (obj: object, msg: string) => void lines.push({ level, msg, obj });
  return { name, stateDir, log: { info: line("info"), warn: line("warn"), error: line("error") } };
}
