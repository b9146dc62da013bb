// How the daemon (and the server, for server-side agents) builds a source from its
// configuration. Each folder under agent/sources/ exports one SourceFactory as its
// default; agent/sources/registry.ts lists them by type.
import type { z } from "zod";
import type { Source } from "./source.js";

/** What a running source gets from the agent besides its configuration. */
export interface SourceContext {
  /** The source's configured name, unique within the agent (used in idempotency keys). */
  name: string;
  /**
   * A folder that belongs to this source alone, kept across restarts, for state the
   * source must remember (e.g. the last acknowledged snapshot). Created before start().
   */
  stateDir: string;
  /** Structured log lines (pino-compatible subset). */
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    error(obj: object, msg: string): void;
  };
}

export interface SourceFactory<C = unknown> {
  /** The SPEC §2 source type, e.g. "filesystem_watch". */
  readonly type: string;
  /**
   * Validates the source's part of the config (everything but `name` and `type`).
   * Unknown keys are refused, so a misspelt option is an error, not a silent default.
   */
  readonly configSchema: z.ZodType<C>;
  create(config: C, ctx: SourceContext): Source;
}
