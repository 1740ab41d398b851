import { HttpError, InfluxDB } from "@influxdata/influxdb-client";
import type { InfluxConfig } from "./config.js";
import { errorChain, tlsProblem } from "./tls.js";

export type { InfluxDB, QueryApi, WriteApi } from "@influxdata/influxdb-client";
export {
  flux,
  fluxDateTime,
  fluxDuration,
  fluxExpression,
  fluxInteger,
  fluxString,
} from "@influxdata/influxdb-client";

export function createInflux(config: InfluxConfig, timeout = 30_000): InfluxDB {
  return new InfluxDB({
    url: config.url,
    token: config.token,
    timeout,
    // Passed to https.request: a CA given replaces the system's roots for this server.
    ...(config.ca === undefined ? {} : { transportOptions: { ca: [config.ca] } }),
  });
}

/** True when InfluxDB answers its health endpoint with "pass". */
export async function influxHealthy(config: InfluxConfig, timeoutMs = 2000): Promise<boolean> {
  try {
    // Through the client's transport, so an https URL with a custom CA is checked as it is used.
    const health = (await createInflux(config, timeoutMs).transport.request("/health", null, {
      method: "GET",
    })) as { status?: string } | undefined;
    return health?.status === "pass";
  } catch {
    return false;
  }
}

/** One call of InfluxDB's HTTP API through the client's transport (so INFLUX_CA_FILE applies). */
async function influxApi(
  config: InfluxConfig,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  try {
    return await createInflux(config, 10_000).transport.request(path, body === undefined ? null : body, {
      method,
      headers: { "content-type": "application/json" },
    });
  } catch (err) {
    if (err instanceof HttpError) {
      throw new Error(
        `InfluxDB ${method} ${path.split("?")[0]} answered ${err.statusCode}: ${(err.body || err.message).slice(0, 300)}`,
      );
    }
    throw err;
  }
}

async function orgId(config: InfluxConfig): Promise<string> {
  const orgs = (await influxApi(config, "GET", `/api/v2/orgs?org=${encodeURIComponent(config.org)}`)) as {
    orgs?: { id: string }[];
  };
  const id = orgs.orgs?.[0]?.id;
  if (id === undefined) throw new Error(`InfluxDB has no organization named ${JSON.stringify(config.org)}`);
  return id;
}

/** The raw bucket and each rollup tier's bucket, with the retention each is created with. */
function wantedBuckets(config: InfluxConfig): [string, number][] {
  return [
    [config.bucket, config.retentionMs.raw],
    ...Object.entries(config.rollupBuckets).map(
      ([tier, name]) =>
        [name, config.retentionMs[tier as keyof typeof config.rollupBuckets]] as [string, number],
    ),
  ];
}

/**
 * Shard groups of the 1h tier span 28 days (InfluxDB's default is 7 days, or the retention if
 * shorter): a month of hourly rollups is then read from two shards, not five, and every shard
 * costs a storage cursor per series. The raw and 1m buckets keep InfluxDB's choice.
 */
const SHARD_GROUP_MS: Record<string, number> = { "1h": 28 * 86_400_000 };

function shardGroupMs(config: InfluxConfig, name: string, retentionMs: number): number | undefined {
  const tier = Object.entries(config.rollupBuckets).find(([, bucket]) => bucket === name)?.[0];
  const wanted = tier === undefined ? undefined : SHARD_GROUP_MS[tier];
  if (wanted === undefined) return undefined;
  return retentionMs > 0 ? Math.min(wanted, retentionMs) : wanted;
}

/** How a bucket keeps its data: retention (0 = forever) and the span of each shard group. */
export interface BucketLayout {
  retentionMs: number;
  shardGroupMs: number;
}

async function findBucket(
  config: InfluxConfig,
  orgID: string,
  name: string,
): Promise<BucketLayout | undefined> {
  const found = (await influxApi(
    config,
    "GET",
    `/api/v2/buckets?orgID=${orgID}&name=${encodeURIComponent(name)}`,
  ).catch((err) => {
    // Asked by name, InfluxDB answers a missing bucket with 404.
    if (/answered 404/.test((err as Error).message)) return {};
    throw err;
  })) as {
    buckets?: { retentionRules?: { everySeconds?: number; shardGroupDurationSeconds?: number }[] }[];
  };
  const bucket = found.buckets?.[0];
  if (bucket === undefined) return undefined;
  const rule = bucket.retentionRules?.[0];
  const retentionMs = (rule?.everySeconds ?? 0) * 1000;
  const shard = (rule?.shardGroupDurationSeconds ?? 0) * 1000;
  return { retentionMs, shardGroupMs: shard > 0 ? shard : defaultShardGroupMs(retentionMs) };
}

/** InfluxDB's own shard group span for a retention, when a bucket was created without one. */
function defaultShardGroupMs(retentionMs: number): number {
  const day = 86_400_000;
  if (retentionMs === 0 || retentionMs > 180 * day) return 7 * day;
  if (retentionMs < 2 * day) return 3_600_000;
  return day;
}

/**
 * The InfluxQL (v1) database name that reads the configured bucket, mapped (a DBRP mapping) when
 * the bucket has none yet.
 */
export async function v1Database(config: InfluxConfig): Promise<string> {
  const orgID = await orgId(config);
  const found = (await influxApi(
    config,
    "GET",
    `/api/v2/buckets?orgID=${orgID}&name=${encodeURIComponent(config.bucket)}`,
  )) as { buckets?: { id: string }[] };
  const bucketID = found.buckets?.[0]?.id;
  if (bucketID === undefined)
    throw new Error(`InfluxDB has no bucket named ${JSON.stringify(config.bucket)}`);
  const mapped = (await influxApi(config, "GET", `/api/v2/dbrps?orgID=${orgID}&bucketID=${bucketID}`)) as {
    content?: { database: string }[];
  };
  const existing = mapped.content?.[0]?.database;
  if (existing !== undefined) return existing;
  await influxApi(config, "POST", "/api/v2/dbrps", {
    orgID,
    bucketID,
    database: config.bucket,
    retention_policy: "autogen",
    default: true,
  });
  return config.bucket;
}

/** Each existing bucket's layout (retention and shard group span); missing buckets are left out. */
export async function bucketLayouts(config: InfluxConfig): Promise<Map<string, BucketLayout>> {
  const orgID = await orgId(config);
  const layouts = new Map<string, BucketLayout>();
  for (const [name] of wantedBuckets(config)) {
    const layout = await findBucket(config, orgID, name);
    if (layout !== undefined) layouts.set(name, layout);
  }
  return layouts;
}

/**
 * Creates the raw and rollup buckets that do not exist yet, each with its configured retention;
 * existing buckets keep theirs.
 */
export async function ensureBuckets(config: InfluxConfig): Promise<void> {
  const orgID = await orgId(config);
  for (const [name, ms] of wantedBuckets(config)) {
    if ((await findBucket(config, orgID, name)) !== undefined) continue;
    await influxApi(config, "POST", "/api/v2/buckets", {
      orgID,
      name,
      retentionRules: [
        {
          type: "expire",
          everySeconds: ms > 0 ? Math.round(ms / 1000) : 0,
          ...shardGroupSeconds(config, name, ms),
        },
      ],
    }).catch((err) => {
      // Another worker created it in the meantime.
      if (!/answered 422/.test((err as Error).message)) throw err;
    });
  }
}

function shardGroupSeconds(
  config: InfluxConfig,
  name: string,
  ms: number,
): { shardGroupDurationSeconds?: number } {
  const shard = shardGroupMs(config, name, ms);
  return shard === undefined ? {} : { shardGroupDurationSeconds: Math.round(shard / 1000) };
}

/** InfluxDB refused this configuration: a token it does not know, or a certificate not trusted. */
export class InfluxAccessError extends Error {
  override name = "InfluxAccessError";
  readonly retriable = false;
}

/**
 * One authenticated request at start-up, so an untrusted certificate or a wrong token fails the
 * process with a message naming the setting, instead of the worker retrying writes forever.
 * Other failures (InfluxDB not up yet) are left to the callers, which retry them.
 */
export async function verifyInfluxAccess(config: InfluxConfig, timeoutMs = 10_000): Promise<void> {
  try {
    // Any valid token may list buckets (the list is filtered to what it may read), so only a token
    // InfluxDB does not know gets 401 here.
    await createInflux(config, timeoutMs).transport.request("/api/v2/buckets?limit=1", null, {
      method: "GET",
    });
  } catch (err) {
    if (err instanceof HttpError && err.statusCode === 401) {
      throw new InfluxAccessError(
        `InfluxDB at ${config.url} rejected INFLUX_TOKEN (401 unauthorized): set a token of org ${JSON.stringify(config.org)} that may use bucket ${JSON.stringify(config.bucket)}`,
        { cause: err },
      );
    }
    for (const e of errorChain(err)) {
      const problem =
        typeof e.code === "string" &&
        tlsProblem(
          e.code,
          `InfluxDB at ${config.url}`,
          "INFLUX_CA_FILE",
          "it requires a client certificate, which this project does not send",
        );
      if (problem) throw new InfluxAccessError(problem, { cause: err });
    }
  }
}
