#!/usr/bin/env node
// Launcher for the TypeScript CLI (tsx compiles on the fly; nothing to build).
import { register } from "tsx/esm/api";

register();
await import("./main.ts");
