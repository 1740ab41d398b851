/**
 * Alert rules, stored in the compacted topic `alert-rules` (key = rule id, tombstone = delete).
 *
 * Every change is a conditional record (see CompactedTable): it names the version it replaces
 * (`expect`) and applies only if that is still the current version when every reader reaches it in
 * the log. The log's order decides between replicas racing with the same ETag; a replica answers
 * only after reading its own record back and seeing whether it won. A loser re-asserts the winner
 * as the key's latest record, so compaction (which keeps only a key's last record) never leaves a
 * losing record to a reader that starts later.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { Logger } from "pino";
import { CompactedTable } from "../common/compacted-table.js";
import type { KafkaConfig } from "../common/config.js";
import { ensureTopics, type Kafka, type Producer, withAdmin } from "../common/kafka.js";
import { type AlertRule, AlertRuleInput, invalidTagKey, parseStoredRule } from "../common/rules.js";
import { topicName } from "../common/topics.js";
import { ProblemError, unavailable, unprocessable } from "./problem.js";

export interface RuleStoreOptions {
  /** How long a change waits to read its own record back before answering 503. */
  writeTimeoutMs: number;
  /** How long start-up may take to read the topic whole. */
  startTimeoutMs: number;
}

/** What a write turned out to be once the log decided. */
type Outcome = "won" | "lost" | "unknown";

export class RuleStore {
  private readonly table: CompactedTable<AlertRule>;
  private producer: Producer | undefined;
  private readonly topic: string;
  /** Changes of one instance go out one at a time; between instances the log decides. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kafka: Kafka,
    private readonly config: KafkaConfig,
    private readonly logger?: Logger,
    private readonly options: RuleStoreOptions = { writeTimeoutMs: 10_000, startTimeoutMs: 30_000 },
  ) {
    this.topic = topicName(config.topicPrefix, "alertRules");
    this.table = new CompactedTable(kafka, this.topic, parseStoredRule, logger);
  }

  async start(): Promise<void> {
    try {
      await withAdmin(this.kafka, (admin) => ensureTopics(admin, this.config, ["alertRules"]));
      this.producer = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
      });
      await this.producer.connect();
      await this.table.start(this.options.startTimeoutMs);
    } catch (err) {
      // A start that fails or times out leaves no producer or consumer connected.
      await this.stop().catch(() => {});
      throw err;
    }
  }

  async stop(): Promise<void> {
    const producer = this.producer;
    this.producer = undefined;
    await Promise.all([producer?.disconnect(), this.table.stop()]);
  }

  /** Records of the topic this copy has not applied yet (0: up to date). */
  lag(): Promise<number> {
    return this.table.lag();
  }

  /** Resolves once every record in the topic when called is applied; rejects after `timeoutMs`. */
  catchUp(timeoutMs: number): Promise<void> {
    return this.table.waitUntilCaughtUp(timeoutMs);
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

  /** The rule when it exists (no 404). */
  peek(id: string): AlertRule | undefined {
    return this.table.get(id);
  }

  private serial<T>(change: () => Promise<T>): Promise<T> {
    const result = this.queue.then(change, change);
    this.queue = result.catch(() => {});
    return result;
  }

  /**
   * Creates a rule. With an idempotency key the id is derived from the key, so a retried request
   * finds the rule its first attempt created (`created: false`) instead of making a second one.
   */
  create(input: AlertRuleInput, idempotencyKey?: string): Promise<{ rule: AlertRule; created: boolean }> {
    return this.serial(() => this.doCreate(input, idempotencyKey));
  }

  replace(id: string, input: AlertRuleInput, ifMatch: string): Promise<AlertRule> {
    return this.serial(async () => {
      const current = this.checkVersion(id, ifMatch);
      return this.update(current, input);
    });
  }

  patch(id: string, patch: Record<string, unknown>, ifMatch: string): Promise<AlertRule> {
    return this.serial(async () => {
      const current = this.checkVersion(id, ifMatch);
      const { id: _id, version: _v, created_at: _c, updated_at: _u, ...editable } = current;
      const merged = mergePatch(editable, patch);
      if (!Value.Check(AlertRuleInput, merged)) {
        const first = [...Value.Errors(AlertRuleInput, merged)].slice(0, 5);
        throw unprocessable(
          `the patched rule is not valid: ${first.map((e) => `${e.path || "/"} ${e.message}`).join("; ")}`,
        );
      }
      return this.update(current, merged);
    });
  }

  delete(id: string, ifMatch: string): Promise<void> {
    return this.serial(async () => {
      const current = this.checkVersion(id, ifMatch);
      const outcome = await this.write(id, null, current.version);
      this.answer(id, outcome);
    });
  }

  private async doCreate(
    input: AlertRuleInput,
    idempotencyKey: string | undefined,
  ): Promise<{ rule: AlertRule; created: boolean }> {
    checkTagKeys(input);
    const digest = requestDigest(input);
    const id = idempotencyKey === undefined ? randomUUID() : idFromKey(idempotencyKey);
    const replay = this.replayOf(id, digest);
    if (replay) return { rule: replay, created: false };
    const previous = this.table.metaOf(id)?.version ?? 0;
    const now = new Date().toISOString();
    const rule: AlertRule = {
      ...withSecret(input, undefined),
      enabled: input.enabled ?? true,
      id,
      version: previous + 1,
      created_at: now,
      updated_at: now,
    };
    const outcome = await this.write(id, rule, previous, { "request-digest": digest });
    if (outcome === "won") return { rule, created: true };
    // Lost to a concurrent request with the same key: that one's rule is the answer.
    const raced = this.replayOf(id, digest);
    if (raced) return { rule: raced, created: false };
    this.answer(id, outcome);
    throw new Error("unreachable: answer() throws for every outcome but won");
  }

  /** The rule an earlier request with this idempotency key created, when the body is the same. */
  private replayOf(id: string, digest: string): AlertRule | undefined {
    const existing = this.table.get(id);
    if (!existing) return undefined;
    const meta = this.table.metaOf(id);
    if (meta?.headers["request-digest"] === digest && existing.version === meta.version) return existing;
    throw new ProblemError(
      409,
      "Conflict",
      `this Idempotency-Key already created rule ${id}${meta?.headers["request-digest"] === digest ? ", which has changed since" : " from a different body"}: GET /v1/rules/${id}, or use a new key for a new rule`,
      "idempotency-key-reused",
    );
  }

  private async update(current: AlertRule, input: AlertRuleInput): Promise<AlertRule> {
    checkTagKeys(input);
    const rule: AlertRule = {
      ...withSecret(input, current.webhook?.secret),
      enabled: input.enabled ?? true,
      id: current.id,
      version: current.version + 1,
      created_at: current.created_at,
      updated_at: new Date().toISOString(),
    };
    const outcome = await this.write(current.id, rule, current.version);
    this.answer(current.id, outcome);
    return rule;
  }

  /** Throws the answer for a write that did not win. */
  private answer(id: string, outcome: Outcome): void {
    if (outcome === "won") return;
    if (outcome === "lost") {
      const now = this.table.get(id);
      throw new ProblemError(
        412,
        "Precondition failed",
        `another change to rule ${id} was applied first${now ? `; its ETag is now ${etag(now)}` : " (it was deleted)"}: GET it again and reapply your change`,
        "precondition-failed",
      );
    }
    throw unavailable(
      "Kafka",
      `the change to rule ${id} was sent but could not be confirmed within ${this.options.writeTimeoutMs} ms: it may have been applied. GET /v1/rules/${id} to see, or retry (with the same Idempotency-Key for a create)`,
    );
  }

  private checkVersion(id: string, ifMatch: string): AlertRule {
    const current = this.get(id);
    const tags = ifMatch.split(",").map((t) => t.trim());
    if (tags.includes("*") || tags.includes(etag(current))) return current;
    const weak = tags.some((t) => t.startsWith("W/"));
    throw new ProblemError(
      412,
      "Precondition failed",
      `the rule changed: its ETag is now ${etag(current)}, yours was ${ifMatch}${weak ? " (weak ETags never match a change: send the strong ETag)" : ""}; GET it again and reapply your change`,
      "precondition-failed",
    );
  }

  /**
   * Sends a conditional record replacing version `expect` and waits until the log has decided it.
   * A send or read-back that times out is settled by reading the topic to its end; only when even
   * that fails is the outcome unknown.
   */
  private async write(
    id: string,
    rule: AlertRule | null,
    expect: number,
    extraHeaders: Record<string, string> = {},
  ): Promise<Outcome> {
    if (!this.producer) throw unavailable("Kafka", "the rule store is not connected to Kafka");
    const revision = randomUUID();
    const version = rule?.version ?? expect + 1;
    const headers = { version: String(version), expect: String(expect), revision, ...extraHeaders };
    const deadline = Date.now() + this.options.writeTimeoutMs;
    try {
      const [meta] = await withDeadline(
        this.producer.send({
          topic: this.topic,
          acks: -1,
          messages: [{ key: id, value: rule === null ? null : JSON.stringify(rule), headers }],
        }),
        deadline,
      );
      if (meta?.baseOffset === undefined) throw new Error("no offset in the produce answer");
      await this.table.waitForOffset(
        meta.partition,
        BigInt(meta.baseOffset),
        Math.max(1, deadline - Date.now()),
      );
    } catch (err) {
      this.logger?.warn({ err, id }, "rule write not confirmed in time; reading the topic to its end");
      try {
        await this.table.waitUntilCaughtUp(this.options.writeTimeoutMs);
      } catch {
        return this.table.metaOf(id)?.revision === revision ? "won" : "unknown";
      }
    }
    if (this.table.metaOf(id)?.revision === revision) return "won";
    await this.reassert(id);
    return "lost";
  }

  /**
   * After losing, makes the key's current state its latest record again (conditional on it still
   * being current), so compaction cannot leave the losing record as the key's only one.
   */
  private async reassert(id: string): Promise<void> {
    for (let attempt = 0; attempt < 5 && this.producer; attempt++) {
      const meta = this.table.metaOf(id);
      if (!meta) return;
      const row = this.table.get(id);
      const [sent] = await this.producer.send({
        topic: this.topic,
        acks: -1,
        messages: [
          {
            key: id,
            value: meta.deleted || !row ? null : JSON.stringify(row),
            headers: { ...meta.headers, expect: String(meta.version) },
          },
        ],
      });
      if (sent?.baseOffset === undefined) return;
      await this.table.waitForOffset(sent.partition, BigInt(sent.baseOffset), this.options.writeTimeoutMs);
      // Applied (the state did not move meanwhile): the latest record is the current state.
      if (this.table.metaOf(id)?.version === meta.version) return;
    }
  }
}

function checkTagKeys(input: AlertRuleInput): void {
  const key = invalidTagKey(input);
  if (key !== undefined) {
    throw unprocessable(
      `sensors.tags has the name ${JSON.stringify(key)}, which is not a tag name: use 1–64 characters of A-Z a-z 0-9 _, starting with a letter`,
    );
  }
}

/** A strong ETag: the rule's version, which the log makes unique per rule. */
export function etag(rule: AlertRule): string {
  return `"${rule.version}"`;
}

/** A rule id from an Idempotency-Key: the same key always names the same rule. */
export function idFromKey(key: string): string {
  const hex = createHash("sha256").update(`alert-rule:${key}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function requestDigest(input: AlertRuleInput): string {
  return createHash("sha256").update(canonicalJson(input)).digest("base64url");
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The rule with its webhook's signing secret: the one given, else the rule's previous one, else a new one. */
function withSecret(input: AlertRuleInput, previous: string | undefined): AlertRuleInput {
  if (!input.webhook) return input;
  return {
    ...input,
    webhook: {
      ...input.webhook,
      secret: input.webhook.secret ?? previous ?? randomBytes(32).toString("base64url"),
    },
  };
}

function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("write timed out")), Math.max(1, deadline - Date.now()));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
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
