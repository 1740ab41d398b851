/**
 * Webhook delivery for alert transitions: a bounded in-memory queue drained by a few concurrent
 * senders, each POST with a timeout and retried with exponential backoff. It runs beside the
 * pipeline and never blocks it: a slow or dead endpoint only fills the queue, whose overflow is
 * dropped and counted. Delivery is at-least-once per transition while the process lives.
 */
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Transition } from "./alerting.js";

export interface WebhookPayload {
  rule_id: string;
  rule_name: string;
  sensor_id: string;
  severity: string;
  state: "firing" | "resolved";
  value: number;
  threshold: number;
  message: string;
  time: string;
}

interface Job {
  url: string;
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
  ) {
    this.outcomes = new Counter({
      name: "ingest_webhook_deliveries_total",
      help: "Webhook deliveries by outcome: delivered, retried, failed (gave up), dropped (queue full)",
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
        const res = await fetch(job.url, {
          method: "POST",
          headers: { "content-type": "application/json", "user-agent": "sensor-analytics-alerts" },
          body: JSON.stringify(job.payload),
          signal: AbortSignal.timeout(job.timeoutMs),
        });
        await res.body?.cancel();
        if (res.ok) {
          this.outcomes.inc({ outcome: "delivered" });
          return;
        }
        throw new Error(`HTTP ${res.status}`);
      } catch (err) {
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
}
