// Types of the test services (the modules are plain ESM so `node test/services/run.mjs`
// runs without a TypeScript loader).

export interface ServiceTimings {
  /** Whole start() call, including waiting for a lock and health checks. */
  totalMs: number;
  /** Jar resolution (Maven), compilation, config and storage format; undefined when reused. */
  prepareMs?: number;
  /** True when Maven copied the jars during this start. */
  downloaded: boolean;
}

export interface ServiceHandle {
  name: "kafka" | "mongo" | "sqs";
  host?: string;
  port?: number;
  /** Connection string: brokers joined by commas, a mongodb:// URL, or the SQS endpoint. */
  url: string;
  pid?: number;
  /** True when this start() launched the process; false when a running one was reused. */
  started: boolean;
  /** Set when the service comes from TEST_KAFKA_BROKERS / TEST_MONGO_URL / TEST_SQS_ENDPOINT. */
  external?: boolean;
  timings?: ServiceTimings;
  /** Stops the service if this start() launched it; `{ always: true }` stops it regardless. */
  stop(options?: { always?: boolean }): Promise<void>;
}

export interface KafkaHandle extends ServiceHandle {
  name: "kafka";
  brokers: string[];
  controllerPort?: number;
  clusterId?: string;
}

export interface MongoHandle extends ServiceHandle {
  name: "mongo";
  /** The wire version / server version the test server reports. */
  wireVersion?: number;
  serverVersion?: string;
}

export interface SqsHandle extends ServiceHandle {
  name: "sqs";
  endpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
}

export interface StartOptions {
  /** Stop a running instance and wipe its data first. */
  fresh?: boolean;
}

export interface ServiceStatus {
  name: string;
  running: boolean;
  pid?: number;
  alive?: boolean;
  answers?: boolean;
  rssMiB?: number;
  url?: string;
  [key: string]: unknown;
}

export interface ServiceModule<H extends ServiceHandle> {
  start(options?: StartOptions): Promise<H>;
  /** Stops the service whoever started it. */
  stop(): Promise<void>;
  status(): Promise<ServiceStatus>;
}

export declare const services: {
  kafka: ServiceModule<KafkaHandle>;
  mongo: ServiceModule<MongoHandle>;
  sqs: ServiceModule<SqsHandle>;
};

export declare const NAMES: readonly ["kafka", "mongo", "sqs"];

export declare function startAll<N extends keyof typeof services>(
  names?: readonly N[],
): Promise<{ [K in N]: K extends "kafka" ? KafkaHandle : K extends "mongo" ? MongoHandle : SqsHandle }>;
