/**
 * Webhook safety: which addresses a webhook may reach, the signature receivers verify, and the
 * notifier refusing a forbidden target at delivery time (where DNS could have changed since).
 */
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { AlertRule } from "../../common/rules.js";
import { forbiddenAddress, signature, webhookAllowedHosts } from "../../common/webhooks.js";
import type { Transition } from "../../ingest/alerting.js";
import { WebhookNotifier } from "../../ingest/notifier.js";

describe("forbiddenAddress", () => {
  it.each([
    ["127.0.0.1", "a loopback address"],
    ["127.8.9.10", "a loopback address"],
    ["::1", "a loopback address"],
    ["::ffff:127.0.0.1", "a loopback address"],
    ["0.0.0.0", "an unspecified address"],
    ["169.254.169.254", "a cloud metadata address"],
    ["fd00:ec2::254", "a cloud metadata address"],
    ["169.254.10.1", "a link-local address"],
    ["fe80::1", "a link-local address"],
    ["10.0.0.1", "a private address"],
    ["172.31.255.255", "a private address"],
    ["192.168.0.1", "a private address"],
    ["100.64.0.1", "a private address"],
    ["fd12:3456::1", "a private address"],
    ["239.1.1.1", "a multicast or reserved address"],
  ])("refuses %s: %s", (address, reason) => {
    expect(forbiddenAddress(address)).toBe(reason);
  });

  it.each(["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"])(
    "allows the public address %s",
    (a) => {
      expect(forbiddenAddress(a)).toBeUndefined();
    },
  );

  it("reads WEBHOOK_ALLOWED_HOSTS and refuses an entry that is not a host", () => {
    expect([...webhookAllowedHosts({ WEBHOOK_ALLOWED_HOSTS: "Hooks.Internal, 127.0.0.1,[::1]" })]).toEqual([
      "hooks.internal",
      "127.0.0.1",
      "::1",
    ]);
    expect(() => webhookAllowedHosts({ WEBHOOK_ALLOWED_HOSTS: "http://x/" })).toThrow(
      /WEBHOOK_ALLOWED_HOSTS/,
    );
  });
});

describe("signature", () => {
  it("is t=<seconds>,v1=<HMAC-SHA256 of t.body> so receivers can verify body and age", () => {
    const body = '{"state":"firing"}';
    const header = signature("k".repeat(32), body, 1_700_000_000);
    const expected = createHmac("sha256", "k".repeat(32)).update(`1700000000.${body}`).digest("hex");
    expect(header).toBe(`t=1700000000,v1=${expected}`);
    expect(signature("k".repeat(32), `${body} `, 1_700_000_000)).not.toBe(header);
  });
});

function transition(url: string, secret: string): Transition {
  const rule = {
    id: "r1",
    name: "hot",
    sensors: { type: "all" },
    field: "temperature",
    condition: { type: "threshold", op: "above", value: 1 },
    severity: "warning",
    version: 1,
    created_at: "2026-01-01T00:00:00Z",
    updated_at: "2026-01-01T00:00:00Z",
    webhook: { url, secret, max_attempts: 2, timeout_ms: 1000 },
  } as AlertRule;
  return { rule, sensorId: "s1", state: "firing", time: 0, value: 2, threshold: 1, message: "hot" };
}

async function receiver() {
  const received: { body: string; signature: string }[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      received.push({ body, signature: String(req.headers["x-sensor-signature"]) });
      res.end("ok");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { received, server, port: (server.address() as AddressInfo).port };
}

async function outcomes(registry: Registry) {
  const values = (await registry.getSingleMetric("ingest_webhook_deliveries_total")?.get())?.values ?? [];
  return Object.fromEntries(values.map((v) => [v.labels.outcome, v.value]));
}

describe("WebhookNotifier", () => {
  const options = { concurrency: 1, maxQueue: 10, initialBackoffMs: 10 };

  it("refuses a loopback target at delivery, without retrying, unless allowed", async () => {
    const hook = await receiver();
    const secret = "s".repeat(40);
    try {
      for (const url of [`http://127.0.0.1:${hook.port}/h`, `http://localhost:${hook.port}/h`]) {
        const registry = new Registry();
        const notifier = new WebhookNotifier(pino({ level: "silent" }), registry, options, new Set());
        notifier.notify([transition(url, secret)]);
        await notifier.drained();
        expect(await outcomes(registry)).toEqual({ refused: 1 });
      }
      expect(hook.received).toHaveLength(0);

      const registry = new Registry();
      const allowed = new WebhookNotifier(
        pino({ level: "silent" }),
        registry,
        options,
        new Set(["localhost"]),
      );
      allowed.notify([transition(`http://localhost:${hook.port}/h`, secret)]);
      await allowed.drained();
      expect(await outcomes(registry)).toEqual({ delivered: 1 });
      expect(hook.received).toHaveLength(1);
      const [{ body, signature: header }] = hook.received as [{ body: string; signature: string }];
      const t = Number(/^t=(\d+),/.exec(header)?.[1]);
      expect(header).toBe(signature(secret, body, t));
      expect(JSON.parse(body)).toMatchObject({ rule_id: "r1", sensor_id: "s1", state: "firing" });
    } finally {
      hook.server.close();
    }
  });
});
