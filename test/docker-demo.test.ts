// docker-compose.yml cannot run here (no Docker engine), so what can be checked without
// it is: the demo agent's config is valid and has a source of every kind, and the compose
// file names every upstream that config reads.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadAgentConfig } from "../agent/daemon/agent-config.js";
import { SOURCES } from "../agent/sources/registry.js";

describe("the Docker demo", () => {
  it("its agent config validates and runs one source of every daemon source type", () => {
    const config = loadAgentConfig("docker/agent/agent.yaml");
    const types = config.sources.map((s) => s.type).sort();
    const daemonTypes = [...SOURCES.keys()].filter((t) => t !== "generic_polling").sort();
    expect(types).toEqual(daemonTypes);
  });

  it("docker-compose.yml runs the ledger, the agent, the demo and every upstream the agent reads", () => {
    const compose = parse(readFileSync("docker-compose.yml", "utf8")) as { services: Record<string, { command?: string[] }> };
    expect(Object.keys(compose.services).sort()).toEqual(["agent", "demo", "kafka", "ledger", "mongo", "mosquitto", "postgres", "redis", "sqs"]);
    expect(compose.services.postgres!.command).toContain("wal_level=logical");
    expect(compose.services.mongo!.command).toContain("--replSet");
    const hosts = readFileSync("docker/agent/agent.yaml", "utf8").match(/\/\/([a-z]+):\d+|"([a-z]+):\d+"/g)!.map((m) => m.replace(/[/"]/g, "").split(":")[0]);
    for (const host of hosts) expect(Object.keys(compose.services)).toContain(host);
  });
});
