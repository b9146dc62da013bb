// The filesystem_watch source type (SPEC §4): reports files created, modified, deleted
// and renamed under configured files and folders, with a SHA-256 content digest (and the
// content itself when configured). Runs in the daemon, watching with chokidar; after a
// restart it reports what changed while it was down, and nothing for unchanged files.
// See docs/sources/filesystem-watch.md for the options, events and positions.
import type { SourceFactory } from "../source-factory.js";
import { filesystemWatchConfigSchema, type FilesystemWatchConfig, type FilesystemWatchConfigInput } from "./config.js";
import { FilesystemWatchSource, SOURCE_TYPE } from "./filesystem-watch-source.js";

const filesystemWatch: SourceFactory<FilesystemWatchConfig> = {
  type: SOURCE_TYPE,
  configSchema: filesystemWatchConfigSchema,
  create: (config, ctx) => new FilesystemWatchSource(config, ctx),
};

export default filesystemWatch;
export { filesystemWatchConfigSchema, FilesystemWatchSource };
export type { FilesystemWatchConfig, FilesystemWatchConfigInput };
