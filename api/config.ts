import { ConfigError, influxConfig, kafkaConfig, list, num, optionalStr, str } from "../common/config.js";
import { webhookAllowedHosts } from "../common/webhooks.js";
import type { TokenSet } from "./auth.js";

type Env = Record<string, string | undefined>;

export interface ApiSettings {
  host: string;
  port: number;
  tokens: TokenSet;
  influx: ReturnType<typeof influxConfig>;
  kafka: ReturnType<typeof kafkaConfig>;
  /** Widest time range one query may cover. */
  maxRangeMs: number;
  /** Most points (rows) one response may hold. */
  maxPoints: number;
  /** Most raw readings one answer may read for what storage cannot compute (quantiles). */
  maxRawPoints: number;
  /** How often the in-memory sensor catalogue (used to check limits before querying) is refreshed. */
  catalogueRefreshMs: number;
  /** Requests one valid bearer token (or, without a valid token, one client address) may make per minute. */
  rateLimitPerMinute: number;
  /** How long one InfluxDB query may run before it is cancelled and answered 504. */
  queryTimeoutMs: number;
  /** How long the rule copy may stay behind the alert-rules topic before /ready says not ready. */
  rulesMaxLagMs: number;
  /** Hosts a rule's webhook may target even when they resolve to private or loopback addresses. */
  webhookAllowedHosts: Set<string>;
}

export function apiSettings(env: Env = process.env): ApiSettings {
  const tokens = { read: list(env, "API_READ_TOKENS", []), admin: list(env, "API_ADMIN_TOKENS", []) };
  if (tokens.read.length === 0 && tokens.admin.length === 0) {
    throw new ConfigError(
      "no API tokens configured: set API_READ_TOKENS and/or API_ADMIN_TOKENS (comma-separated); the API never runs open",
    );
  }
  for (const token of [...tokens.read, ...tokens.admin]) {
    if (token.length < 16 || /\s/.test(token)) {
      throw new ConfigError("every API token must be at least 16 characters without spaces");
    }
  }
  return {
    host: str(env, "API_HOST", "127.0.0.1"),
    port: num(env, "API_PORT", 8080, { min: 0, max: 65535, integer: true }),
    tokens,
    // Queries need only read access: a token that can read the bucket(s) and nothing else.
    influx: influxConfig({ ...env, INFLUX_TOKEN: optionalStr(env, "INFLUX_READ_TOKEN") ?? env.INFLUX_TOKEN }),
    kafka: kafkaConfig(env),
    maxRangeMs: num(env, "API_MAX_RANGE_DAYS", 31, { min: 1 / 24, max: 3660 }) * 86_400_000,
    maxPoints: num(env, "API_MAX_POINTS", 100_000, { min: 100, max: 10_000_000, integer: true }),
    maxRawPoints: num(env, "API_MAX_RAW_POINTS", 5_000_000, { min: 1000, max: 1_000_000_000, integer: true }),
    catalogueRefreshMs: num(env, "API_CATALOGUE_REFRESH_MS", 300_000, {
      min: 0,
      max: 86_400_000,
      integer: true,
    }),
    rateLimitPerMinute: num(env, "API_RATE_LIMIT_PER_MINUTE", 600, { min: 1, max: 1_000_000, integer: true }),
    queryTimeoutMs: num(env, "API_QUERY_TIMEOUT_MS", 20_000, { min: 100, max: 600_000, integer: true }),
    rulesMaxLagMs: num(env, "API_RULES_MAX_LAG_MS", 5000, { min: 100, max: 600_000, integer: true }),
    webhookAllowedHosts: webhookAllowedHosts(env),
  };
}
