import { InfluxDB } from "@influxdata/influxdb-client";
import type { InfluxConfig } from "./config.js";

export type { QueryApi, WriteApi } from "@influxdata/influxdb-client";
export {
  flux,
  fluxDateTime,
  fluxDuration,
  fluxExpression,
  fluxInteger,
  fluxString,
} from "@influxdata/influxdb-client";

export function createInflux(config: InfluxConfig, timeout = 30_000): InfluxDB {
  return new InfluxDB({ url: config.url, token: config.token, timeout });
}

/** True when InfluxDB answers its health endpoint with "pass". */
export async function influxHealthy(config: InfluxConfig, timeoutMs = 2000): Promise<boolean> {
  try {
    const res = await fetch(`${config.url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.ok;
  } catch {
    return false;
  }
}

async function influxApi(
  config: InfluxConfig,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(`${config.url}${path}`, {
    method,
    headers: { authorization: `Token ${config.token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  if (!res.ok) {
    throw new Error(
      `InfluxDB ${method} ${path.split("?")[0]} answered ${res.status}: ${(await res.text()).slice(0, 300)}`,
    );
  }
  return res.status === 204 ? undefined : res.json();
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

async function findBucket(config: InfluxConfig, orgID: string, name: string): Promise<number | undefined> {
  const found = (await influxApi(
    config,
    "GET",
    `/api/v2/buckets?orgID=${orgID}&name=${encodeURIComponent(name)}`,
  ).catch((err) => {
    // Asked by name, InfluxDB answers a missing bucket with 404.
    if (/answered 404/.test((err as Error).message)) return {};
    throw err;
  })) as { buckets?: { retentionRules?: { everySeconds?: number }[] }[] };
  const bucket = found.buckets?.[0];
  return bucket === undefined ? undefined : (bucket.retentionRules?.[0]?.everySeconds ?? 0) * 1000;
}

/** Each existing bucket's retention in ms (0 = forever); missing buckets are left out. */
export async function bucketRetentions(config: InfluxConfig): Promise<Map<string, number>> {
  const orgID = await orgId(config);
  const retention = new Map<string, number>();
  for (const [name] of wantedBuckets(config)) {
    const ms = await findBucket(config, orgID, name);
    if (ms !== undefined) retention.set(name, ms);
  }
  return retention;
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
      retentionRules: ms > 0 ? [{ type: "expire", everySeconds: Math.round(ms / 1000) }] : [],
    }).catch((err) => {
      // Another worker created it in the meantime.
      if (!/answered 422/.test((err as Error).message)) throw err;
    });
  }
}
