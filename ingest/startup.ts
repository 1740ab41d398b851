/**
 * Which worker start-up failures are worth retrying. Right after a broker starts, or right after
 * the topics were created, Kafka answers "unknown topic-partition", "leader not available" or
 * "coordinator loading" for a few seconds; those pass. Bad configuration or refused credentials do
 * not, and retrying them would only hide the message the operator needs.
 */

import { isConfigurationError } from "../common/kafka.js";

/** kafkajs errors that mean "the broker or its metadata is not there yet". */
const TRANSIENT_NAMES = new Set([
  "KafkaJSConnectionError",
  "KafkaJSConnectionClosedError",
  "KafkaJSRequestTimeoutError",
  "KafkaJSBrokerNotFound",
  "KafkaJSNoBrokerAvailableError",
  "KafkaJSGroupCoordinatorNotFound",
  "KafkaJSMetadataNotLoaded",
  "KafkaJSTopicMetadataNotLoaded",
  "KafkaJSStaleTopicMetadataAssignment",
]);

const TRANSIENT_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "EPIPE"]);

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  type?: unknown;
  retriable?: unknown;
  cause?: unknown;
  originalError?: unknown;
}

/** The error and what it wraps (kafkajs puts the last attempt's error in `cause`/`originalError`). */
function chain(err: unknown): ErrorLike[] {
  const out: ErrorLike[] = [];
  let current: unknown = err;
  while (typeof current === "object" && current !== null && out.length < 10) {
    const e = current as ErrorLike;
    out.push(e);
    current = e.cause ?? e.originalError;
  }
  return out;
}

/**
 * True when the failure is one the broker recovers from by itself. A broker protocol error
 * carries Kafka's own verdict (`retriable`: unknown topic-partition, leader not available,
 * coordinator loading or not available, not coordinator: yes; authorization or SASL failures: no).
 */
export function isRetriableStartupError(err: unknown): boolean {
  if (isConfigurationError(err)) return false;
  const errors = chain(err);
  for (const e of errors) {
    if (e.name === "KafkaJSSASLAuthenticationError") return false;
    if (e.name === "KafkaJSProtocolError" && e.retriable === false) return false;
  }
  return errors.some(
    (e) =>
      (e.name === "KafkaJSProtocolError" && e.retriable === true) ||
      (typeof e.name === "string" && TRANSIENT_NAMES.has(e.name)) ||
      (typeof e.code === "string" && TRANSIENT_CODES.has(e.code)),
  );
}

/** Capped exponential backoff: 500 ms, 1 s, 2 s, … up to `capMs`. */
export function startupBackoffMs(attempt: number, baseMs = 500, capMs = 15_000): number {
  return Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
}

/** What to log about a start-up error: its message, and the broker error type when there is one. */
export function describeStartupError(err: unknown): string {
  const errors = chain(err);
  const first = errors[0] as (ErrorLike & { message?: unknown }) | undefined;
  const message = typeof first?.message === "string" ? first.message : String(err);
  const type = errors.map((e) => e.type).find((t) => typeof t === "string");
  return type ? `${message} (${type})` : message;
}
