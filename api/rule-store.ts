/**
 * Alert rules, stored in the compacted topic `alert-rules` (key = rule id, tombstone = delete).
 * Writes go to Kafka with acks from all in-sync replicas; reads come from this instance's own
 * materialised copy, which every write waits for, so a client reads its own writes.
 * Versions give optimistic concurrency (ETag / If-Match) against other operators.
 */
import { randomUUID } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { Logger } from "pino";
import { CompactedTable } from "../common/compacted-table.js";
import type { KafkaConfig } from "../common/config.js";
import { ensureTopics, type Kafka, type Producer, withAdmin } from "../common/kafka.js";
import { type AlertRule, AlertRuleInput, durationToMs, parseStoredRule } from "../common/rules.js";
import { topicName } from "../common/topics.js";
import { badRequest, ProblemError } from "./problem.js";

const MAX_DURATION_MS = 7 * 86_400_000;

export class RuleStore {
  private readonly table: CompactedTable<AlertRule>;
  private producer: Producer | undefined;
  private readonly topic: string;
  /** Changes are applied one at a time, so a version check and its write cannot interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kafka: Kafka,
    private readonly config: KafkaConfig,
    logger?: Logger,
  ) {
    this.topic = topicName(config.topicPrefix, "alertRules");
    this.table = new CompactedTable(kafka, this.topic, parseStoredRule, logger);
  }

  async start(): Promise<void> {
    await withAdmin(this.kafka, (admin) => ensureTopics(admin, this.config, ["alertRules"]));
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
    });
    await this.producer.connect();
    await this.table.start();
  }

  async stop(): Promise<void> {
    await this.producer?.disconnect();
    await this.table.stop();
  }

  list(): AlertRule[] {
    return this.table
      .values()
      .sort((a, b) => a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id));
  }

  get(id: string): AlertRule {
    const rule = this.table.get(id);
    if (!rule)
      throw new ProblemError(404, "Not found", `no alert rule with id ${JSON.stringify(id)}`, "not-found");
    return rule;
  }

  private serial<T>(change: () => Promise<T>): Promise<T> {
    const result = this.queue.then(change, change);
    this.queue = result.catch(() => {});
    return result;
  }

  create(input: AlertRuleInput): Promise<AlertRule> {
    return this.serial(() => this.doCreate(input));
  }

  replace(id: string, input: AlertRuleInput, ifMatch: string | undefined): Promise<AlertRule> {
    return this.serial(() => this.doReplace(id, input, ifMatch));
  }

  patch(id: string, patch: Record<string, unknown>, ifMatch: string | undefined): Promise<AlertRule> {
    return this.serial(() => this.doPatch(id, patch, ifMatch));
  }

  delete(id: string, ifMatch: string | undefined): Promise<void> {
    return this.serial(() => this.doDelete(id, ifMatch));
  }

  private async doCreate(input: AlertRuleInput): Promise<AlertRule> {
    checkSemantics(input);
    const now = new Date().toISOString();
    const rule: AlertRule = {
      ...input,
      enabled: input.enabled ?? true,
      id: randomUUID(),
      version: 1,
      created_at: now,
      updated_at: now,
    };
    await this.write(rule.id, rule);
    return rule;
  }

  private async doReplace(
    id: string,
    input: AlertRuleInput,
    ifMatch: string | undefined,
  ): Promise<AlertRule> {
    const current = this.checkVersion(id, ifMatch);
    checkSemantics(input);
    const rule: AlertRule = {
      ...input,
      enabled: input.enabled ?? true,
      id,
      version: current.version + 1,
      created_at: current.created_at,
      updated_at: new Date().toISOString(),
    };
    await this.write(id, rule);
    return rule;
  }

  /** JSON Merge Patch (RFC 7396) over the rule's editable fields; null removes an optional field. */
  private async doPatch(
    id: string,
    patch: Record<string, unknown>,
    ifMatch: string | undefined,
  ): Promise<AlertRule> {
    const current = this.checkVersion(id, ifMatch);
    const { id: _id, version: _v, created_at: _c, updated_at: _u, ...editable } = current;
    const merged = mergePatch(editable, patch);
    if (!Value.Check(AlertRuleInput, merged)) {
      const first = [...Value.Errors(AlertRuleInput, merged)].slice(0, 5);
      throw badRequest(
        `the patched rule is not valid: ${first.map((e) => `${e.path || "/"} ${e.message}`).join("; ")}`,
      );
    }
    return this.doReplace(id, merged, ifMatch);
  }

  private async doDelete(id: string, ifMatch: string | undefined): Promise<void> {
    this.checkVersion(id, ifMatch);
    await this.write(id, null);
  }

  private checkVersion(id: string, ifMatch: string | undefined): AlertRule {
    const current = this.get(id);
    if (ifMatch === undefined) {
      throw new ProblemError(
        428,
        "Precondition required",
        `send If-Match: "${current.version}" (the rule's ETag) so a concurrent change is not overwritten`,
        "precondition-required",
      );
    }
    if (ifMatch !== "*" && ifMatch.replace(/^W\//, "") !== etag(current)) {
      throw new ProblemError(
        412,
        "Precondition failed",
        `the rule changed: its ETag is now ${etag(current)}, yours was ${ifMatch}; GET it again and reapply your change`,
        "precondition-failed",
      );
    }
    return current;
  }

  private async write(id: string, rule: AlertRule | null): Promise<void> {
    if (!this.producer) throw new Error("rule store not started");
    const [meta] = await this.producer.send({
      topic: this.topic,
      acks: -1,
      messages: [{ key: id, value: rule === null ? null : JSON.stringify(rule) }],
    });
    if (meta?.baseOffset !== undefined)
      await this.table.waitForOffset(meta.partition, BigInt(meta.baseOffset));
  }
}

export function etag(rule: AlertRule): string {
  return `"${rule.version}"`;
}

function mergePatch(
  target: Record<string, unknown>,
  patch: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...target };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else if (typeof value === "object" && !Array.isArray(value)) {
      // RFC 7396: an object merges into the target's object, or into {} when there is none.
      const base = out[key];
      const into = typeof base === "object" && base !== null && !Array.isArray(base) ? base : {};
      out[key] = mergePatch(into as Record<string, unknown>, value as Record<string, unknown>);
    } else out[key] = value;
  }
  return out;
}

/** What JSON Schema cannot say: durations that make sense, options that fit the condition. */
function checkSemantics(rule: AlertRuleInput): void {
  const c = rule.condition;
  const positive = (name: string, text: string) => {
    const ms = durationToMs(text);
    if (ms <= 0 || ms > MAX_DURATION_MS)
      throw badRequest(`${name}=${text} is not valid: use a duration above 0 and at most 7d`);
  };
  if (rule.for !== undefined && durationToMs(rule.for) > MAX_DURATION_MS)
    throw badRequest(`for=${rule.for} is not valid: at most 7d`);
  if (c.type === "deadman") positive("condition.after", c.after);
  if (c.type === "rate_of_change") positive("condition.per", c.per);
  if (c.type === "window") {
    positive("condition.window", c.window);
    if (durationToMs(c.window) < 1000)
      throw badRequest(`condition.window=${c.window} is not valid: at least 1s`);
  }
  if (rule.hysteresis !== undefined && (c.type === "anomaly" || c.type === "deadman")) {
    throw badRequest(`hysteresis applies to threshold, rate_of_change and window conditions, not ${c.type}`);
  }
  if (rule.resolve_after !== undefined) {
    if (c.type !== "anomaly") throw badRequest(`resolve_after applies to anomaly conditions, not ${c.type}`);
    positive("resolve_after", rule.resolve_after);
  }
}
