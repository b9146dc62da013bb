// The suite's test services, for a vitest global setup (or any script):
//   import { services } from "../services/index.mjs";
//   const kafka = await services.kafka.start();   // { brokers, url, stop(), ... }
// Each start() reuses a healthy running instance, else starts one; handle.stop() stops it
// only if that start() launched it. See README.md beside this file.
import * as kafka from "./kafka.mjs";
import * as mongo from "./mongo.mjs";
import * as sqs from "./sqs.mjs";

export const services = { kafka, mongo, sqs };
export const NAMES = /** @type {const} */ (["kafka", "mongo", "sqs"]);

/** Starts the named services one after another (two cores: JVM starts do not overlap). */
export async function startAll(names = NAMES) {
  const handles = {};
  try {
    for (const name of names) handles[name] = await services[name].start();
  } catch (err) {
    await Promise.all(Object.values(handles).map((h) => h.stop().catch(() => undefined)));
    throw err;
  }
  return handles;
}
