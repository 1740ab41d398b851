/**
 * Webhook delivery for alert transitions: a bounded in-memory queue drained by a few concurrent
 * senders, each POST with a timeout and retried with exponential backoff. It runs beside the
 * pipeline and never blocks it: a slow or dead endpoint only fills the queue, whose overflow is
 * dropped and counted. Delivery is at-least-once per transition while the process lives.
 *
 * Every body is signed (see common/webhooks.ts), and every address connected to is checked: a
 * target that is or resolves to a loopback, link-local, private or metadata address is refused
 * unless its host is in WEBHOOK_ALLOWED_HOSTS.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import {
  forbiddenAddress,
  guardedLookup,
  hostOf,
  SIGNATURE_HEADER,
  signature,
  WebhookTargetError,
  webhookAllowedHosts,
} from "../common/webhooks.js";
import type { Transition } from "./alerting.js";

export interface WebhookPayload {
  rule_id: string;
  rule_name: string;
  sensor_id: string;
  severity: string;
  state: Transition["state"];
  value: number;
  threshold: number;
  message: string;
  time: string;
  /** Present when a rule change, not the condition, caused the transition. */
  reason?: Transition["reason"];
}

interface Job {
  url: string;
  secret: string | undefined;
  timeoutMs: number;
  maxAttempts: number;
  payload: WebhookPayload;
}

export function payloadOf(t: Transition): WebhookPayload {
  return {
    rule_id: t.rule.id,
    rule_name: t.rule.name,
    sensor_id: t.sensorId,
    severity: t.rule.severity,
    state: t.state,
    value: t.value,
    threshold: t.threshold,
    message: t.message,
    time: new Date(t.time).toISOString(),
    ...(t.reason === undefined ? {} : { reason: t.reason }),
  };
}

export class WebhookNotifier {
  private readonly queue: Job[] = [];
  private active = 0;
  private readonly outcomes: Counter;
  private readonly idle = new Set<() => void>();

  constructor(
    private readonly logger: Logger,
    registry: Registry,
    private readonly options = { concurrency: 4, maxQueue: 10_000, initialBackoffMs: 500 },
    private readonly allowedHosts: Set<string> = webhookAllowedHosts(),
  ) {
    this.outcomes = new Counter({
      name: "ingest_webhook_deliveries_total",
      help: "Webhook deliveries by outcome: delivered, retried, failed (gave up), dropped (queue full), refused (forbidden target)",
      labelNames: ["outcome"],
      registers: [registry],
    });
  }

  notify(transitions: Transition[]): void {
    for (const t of transitions) {
      const hook = t.rule.webhook;
      if (!hook) continue;
      if (this.queue.length >= this.options.maxQueue) {
        this.queue.shift();
        this.outcomes.inc({ outcome: "dropped" });
      }
      this.queue.push({
        url: hook.url,
        secret: hook.secret,
        timeoutMs: hook.timeout_ms ?? 5000,
        maxAttempts: hook.max_attempts ?? 5,
        payload: payloadOf(t),
      });
    }
    this.pump();
  }

  /** Resolves when the queue is empty and nothing is in flight (for shutdown and tests). */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.add(resolve));
  }

  private pump(): void {
    while (this.active < this.options.concurrency && this.queue.length > 0) {
      const job = this.queue.shift() as Job;
      this.active++;
      void this.deliver(job).finally(() => {
        this.active--;
        this.pump();
        if (this.queue.length === 0 && this.active === 0) {
          for (const resolve of this.idle) resolve();
          this.idle.clear();
        }
      });
    }
  }

  private async deliver(job: Job): Promise<void> {
    let delay = this.options.initialBackoffMs;
    for (let attempt = 1; attempt <= job.maxAttempts; attempt++) {
      try {
        const status = await this.post(job);
        if (status >= 200 && status < 300) {
          this.outcomes.inc({ outcome: "delivered" });
          return;
        }
        throw new Error(`HTTP ${status}`);
      } catch (err) {
        if (err instanceof WebhookTargetError) {
          // Not a transient failure: the target stays forbidden, so no retries.
          this.outcomes.inc({ outcome: "refused" });
          this.logger.warn({ rule: job.payload.rule_id, error: err.message }, "webhook target refused");
          return;
        }
        if (attempt === job.maxAttempts) {
          this.outcomes.inc({ outcome: "failed" });
          this.logger.warn(
            { url: job.url, attempts: attempt, error: (err as Error).message, rule: job.payload.rule_id },
            "webhook delivery failed",
          );
          return;
        }
        this.outcomes.inc({ outcome: "retried" });
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  }

  /** One signed POST; resolves with the status. The address connected to is the one checked. */
  private post(job: Job): Promise<number> {
    const url = new URL(job.url);
    const host = hostOf(url);
    if (isIP(host) && !this.allowedHosts.has(host)) {
      const reason = forbiddenAddress(host);
      if (reason)
        return Promise.reject(
          new WebhookTargetError(
            `webhook host ${host} is ${reason}; list it in WEBHOOK_ALLOWED_HOSTS to allow it`,
          ),
        );
    }
    const body = JSON.stringify(job.payload);
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(body)),
      "user-agent": "sensor-analytics-alerts",
    };
    if (job.secret) headers[SIGNATURE_HEADER] = signature(job.secret, body, Math.floor(Date.now() / 1000));
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method: "POST",
          headers,
          timeout: job.timeoutMs,
          lookup: guardedLookup(host, this.allowedHosts) as never,
        },
        (res) => {
          res.resume();
          res.once("end", () => resolve(res.statusCode ?? 0));
          res.once("error", reject);
        },
      );
      req.once("timeout", () => req.destroy(new Error(`no answer within ${job.timeoutMs} ms`)));
      req.once("error", (err: NodeJS.ErrnoException) =>
        reject(err.code === "EWEBHOOKTARGET" ? new WebhookTargetError(err.message) : err),
      );
      req.end(body);
    });
  }
}
