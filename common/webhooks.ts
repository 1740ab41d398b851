/**
 * Webhook safety shared by the API (checks a rule's target when it is saved) and the worker (checks
 * every address it connects to, so a name that later resolves elsewhere is caught too): no
 * loopback, link-local, private or cloud-metadata targets unless the operator allows the host, and
 * a signature receivers can verify.
 */
import { createHmac } from "node:crypto";
import { lookup } from "node:dns/promises";
import { BlockList, isIP } from "node:net";
import { ConfigError, list } from "./config.js";

type Env = Record<string, string | undefined>;

/** Hosts (names or IP addresses, as written in the URL) a webhook may target whatever they resolve to. */
export function webhookAllowedHosts(env: Env = process.env): Set<string> {
  const hosts = list(env, "WEBHOOK_ALLOWED_HOSTS", []).map((h) => h.toLowerCase());
  for (const host of hosts) {
    if (!/^[a-z0-9.:[\]-]+$/.test(host)) {
      throw new ConfigError(
        `WEBHOOK_ALLOWED_HOSTS entry ${JSON.stringify(host)} is not valid: expected host names or IP addresses, comma-separated`,
      );
    }
  }
  return new Set(hosts.map((h) => h.replace(/^\[|\]$/g, "")));
}

const forbidden: { name: string; list: BlockList }[] = [];
function block(name: string, ranges: [string, number, "ipv4" | "ipv6"][]) {
  const list = new BlockList();
  for (const [net, prefix, type] of ranges) list.addSubnet(net, prefix, type);
  forbidden.push({ name, list });
}
// Metadata first: 169.254.169.254 is link-local too, and "metadata" says more.
block("a cloud metadata address", [
  ["169.254.169.254", 32, "ipv4"],
  ["169.254.170.2", 32, "ipv4"],
  ["100.100.100.200", 32, "ipv4"],
  ["fd00:ec2::254", 128, "ipv6"],
]);
block("a loopback address", [
  ["127.0.0.0", 8, "ipv4"],
  ["::1", 128, "ipv6"],
]);
block("an unspecified address", [
  ["0.0.0.0", 8, "ipv4"],
  ["::", 128, "ipv6"],
]);
block("a link-local address", [
  ["169.254.0.0", 16, "ipv4"],
  ["fe80::", 10, "ipv6"],
]);
block("a private address", [
  ["10.0.0.0", 8, "ipv4"],
  ["172.16.0.0", 12, "ipv4"],
  ["192.168.0.0", 16, "ipv4"],
  ["100.64.0.0", 10, "ipv4"],
  ["fc00::", 7, "ipv6"],
]);
block("a multicast or reserved address", [
  ["224.0.0.0", 3, "ipv4"],
  ["ff00::", 8, "ipv6"],
]);

/** Why a webhook may not connect to `address`, or undefined when it may. */
export function forbiddenAddress(address: string): string | undefined {
  let ip = address;
  // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is the IPv4 address.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) ip = mapped[1] as string;
  const type = isIP(ip);
  if (type === 0) return "not an IP address";
  for (const { name, list } of forbidden) {
    if (list.check(ip, type === 4 ? "ipv4" : "ipv6")) return name;
  }
  return undefined;
}

export class WebhookTargetError extends Error {}

/** The URL's host as written, without IPv6 brackets, lower case. */
export function hostOf(url: URL): string {
  return url.hostname.toLowerCase().replace(/^\[|\]$/g, "");
}

/**
 * Resolves the URL's host and refuses it when any address it resolves to is forbidden. A name that
 * does not resolve now is let through: delivery checks again (see `guardedLookup`).
 */
export async function checkWebhookTarget(text: string, allowed: Set<string>): Promise<void> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // A URI by RFC 3986 (e.g. "http://" with an empty host) that no HTTP client can call.
    throw new WebhookTargetError(
      `${JSON.stringify(text)} is not a URL a webhook can be sent to: give a host, e.g. https://hooks.example.com/alerts`,
    );
  }
  const host = hostOf(url);
  if (allowed.has(host)) return;
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);
    } catch {
      return;
    }
  }
  for (const address of addresses) {
    const reason = forbiddenAddress(address);
    if (reason) {
      throw new WebhookTargetError(
        `webhook host ${JSON.stringify(host)}${address === host ? "" : ` resolves to ${address}, which`} is ${reason}; webhooks go to public addresses only, unless the host is listed in WEBHOOK_ALLOWED_HOSTS`,
      );
    }
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | { address: string; family: number }[],
  family?: number,
) => void;

/**
 * A `lookup` for node:http(s) requests: resolves as usual, then refuses forbidden addresses, so the
 * address checked is the address connected to.
 */
export function guardedLookup(host: string, allowed: Set<string>) {
  return (hostname: string, options: { all?: boolean }, callback: LookupCallback) => {
    lookup(hostname, { all: true, verbatim: true }).then(
      (addresses) => {
        if (!allowed.has(host)) {
          for (const a of addresses) {
            const reason = forbiddenAddress(a.address);
            if (reason) {
              const err = new WebhookTargetError(
                `webhook host ${JSON.stringify(hostname)} resolves to ${a.address}, which is ${reason}; list it in WEBHOOK_ALLOWED_HOSTS to allow it`,
              ) as NodeJS.ErrnoException;
              err.code = "EWEBHOOKTARGET";
              callback(err, []);
              return;
            }
          }
        }
        if (options.all) callback(null, addresses);
        else {
          const first = addresses[0];
          if (!first)
            callback(Object.assign(new Error(`${hostname} did not resolve`), { code: "ENOTFOUND" }), []);
          else callback(null, first.address, first.family);
        }
      },
      (err: NodeJS.ErrnoException) => callback(err, []),
    );
  };
}

export const SIGNATURE_HEADER = "x-sensor-signature";

/**
 * The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with
 * the rule's secret>`. The timestamp is signed too, so a receiver can refuse replays of old bodies.
 */
export function signature(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}
