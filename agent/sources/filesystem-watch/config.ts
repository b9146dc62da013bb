// The filesystem_watch source's configuration (everything but `name` and `type`).
// Unknown keys are refused, and every error names the field it is about.
import { z } from "zod";

/** Largest `max_content_bytes`: base64 of it still fits the ledger's default 1 MiB payload. */
export const MAX_CONTENT_BYTES_LIMIT = 512 * 1024;

export const filesystemWatchConfigSchema = z
  .strictObject({
    /**
     * Files or folders to watch. Relative paths are taken from the daemon's working
     * folder; each is resolved once, at start, to its real absolute path (a symlinked
     * root is followed), and must exist then.
     */
    paths: z.array(z.string().min(1, "must not be empty")).min(1, "list at least one file or folder"),
    /**
     * Glob patterns for paths under the watched folders to leave out (`*`, `?`, `**`).
     * A pattern without `/` is matched against every name in the path (`*.tmp`,
     * `node_modules`); one starting with `/` against the absolute path; any other against
     * the path relative to the watched folder (`build/**`, `logs/*.gz`). A pattern that
     * matches a folder leaves out everything beneath it. Configured files are never ignored.
     */
    ignore: z.array(z.string().min(1, "must not be empty")).default([]),
    /** Put the file's content in created/modified events (utf8, else base64). */
    include_content: z.boolean().default(false),
    /** Files larger than this get the digest only; the payload says the content was omitted. */
    max_content_bytes: z.number().int().min(0).max(MAX_CONTENT_BYTES_LIMIT).default(64 * 1024),
    /** Follow symlinks inside the watched folders. Off: symlinks are neither followed nor reported. */
    follow_symlinks: z.boolean().default(false),
    /** A file is read once its size has not changed for this long (0: at once), in ms. */
    stability_ms: z.number().int().min(0).max(60_000).default(200),
    /**
     * How long a deleted file waits for a new path with the same inode, size and digest
     * to turn up (then one `file.renamed` is emitted instead), in ms. Deletions are
     * reported this late. Must exceed stability_ms.
     */
    rename_window_ms: z.number().int().min(1).max(600_000).default(1000),
    /** Watch folders recursively; off: only the files directly in them. */
    recursive: z.boolean().default(true),
    /**
     * Changed paths remembered while paused (backpressure) or busy; beyond this the source
     * forgets them and rescans every watched path instead, so nothing is lost.
     */
    max_pending_paths: z.number().int().min(1).max(10_000_000).default(10_000),
  })
  .superRefine((c, ctx) => {
    if (c.rename_window_ms <= c.stability_ms) {
      ctx.addIssue({
        code: "custom",
        path: ["rename_window_ms"],
        message: `must exceed stability_ms (${c.stability_ms}): the new name of a renamed file is seen only after stability_ms`,
      });
    }
  });

export type FilesystemWatchConfigInput = z.input<typeof filesystemWatchConfigSchema>;
export type FilesystemWatchConfig = z.output<typeof filesystemWatchConfigSchema>;
