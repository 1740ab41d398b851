/**
 * The provisioned Grafana files: the committed dashboard JSON is exactly what grafana/build.ts
 * renders, every datasource reference resolves to the provisioned datasource, and the provisioning
 * YAML has what Grafana needs, wired to what docker-compose.yml gives the grafana service.
 */
import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { pushdownProblems } from "../../common/flux-shapes.js";
import { DASHBOARDS_DIR, dashboards, PROVISIONING_DIR, render } from "../../grafana/catalog.js";
import { quoted } from "../../grafana/flux.js";
import { dashboardQueries } from "../../grafana/interpolate.js";
import type { Dashboard } from "../../grafana/model.js";

const ROOT = new URL("../../", import.meta.url);

async function yamlFile(url: URL): Promise<unknown> {
  return parse(await readFile(url, "utf8"), { merge: true });
}

interface DatasourceFile {
  apiVersion: number;
  datasources: {
    name: string;
    uid: string;
    type: string;
    access: string;
    url: string;
    isDefault: boolean;
    jsonData: Record<string, unknown>;
    secureJsonData: Record<string, unknown>;
  }[];
}

interface ProviderFile {
  apiVersion: number;
  providers: { name: string; type: string; options: { path: string } }[];
}

interface ComposeFile {
  services: Record<string, { environment?: Record<string, unknown>; volumes?: string[] }>;
}

const datasourceFile = () =>
  yamlFile(new URL("datasources/influxdb.yaml", PROVISIONING_DIR)) as Promise<DatasourceFile>;
const providerFile = () =>
  yamlFile(new URL("dashboards/dashboards.yaml", PROVISIONING_DIR)) as Promise<ProviderFile>;
const composeFile = () => yamlFile(new URL("docker-compose.yml", ROOT)) as Promise<ComposeFile>;

/** Every `datasource` object anywhere in a dashboard: panels, targets, variables, annotations. */
function datasourceRefs(value: unknown, path = "$"): { path: string; ref: unknown }[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => datasourceRefs(v, `${path}[${i}]`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([key, v]) =>
    key === "datasource" ? [{ path: `${path}.${key}`, ref: v }] : datasourceRefs(v, `${path}.${key}`),
  );
}

/** Every Flux query of a dashboard, with where it sits. */
function queries(d: Dashboard): { where: string; query: string }[] {
  return dashboardQueries(d).map((q) => ({ where: `${q.kind} ${q.name}`, query: q.query }));
}

describe("Grafana dashboards as code", () => {
  const all = dashboards();

  it("commits exactly the files grafana/build.ts renders (run `npm run dashboards` when this fails)", async () => {
    const committed = (await readdir(DASHBOARDS_DIR)).filter((f) => f.endsWith(".json")).sort();
    expect(committed).toEqual(all.map((d) => d.file).sort());
    for (const { file, dashboard } of all) {
      expect(await readFile(new URL(file, DASHBOARDS_DIR), "utf8"), file).toBe(render(dashboard));
    }
  });

  it("gives every dashboard its own uid and title, and every panel its own id and title", () => {
    const uids = all.map((d) => d.dashboard.uid);
    expect(new Set(uids).size).toBe(uids.length);
    expect(uids).toEqual(["sensor-fleet", "sensor-detail", "sensor-alerts", "sensor-pipeline"]);
    const titles = all.map((d) => d.dashboard.title);
    expect(new Set(titles).size).toBe(titles.length);
    for (const { dashboard } of all) {
      expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
      const ids = dashboard.panels.map((p) => p.id);
      expect(new Set(ids).size, dashboard.uid).toBe(ids.length);
      const panelTitles = dashboard.panels.map((p) => p.title);
      expect(new Set(panelTitles).size, dashboard.uid).toBe(panelTitles.length);
    }
  });

  it("resolves every datasource reference to the provisioned datasource", async () => {
    const provisioned = new Map((await datasourceFile()).datasources.map((d) => [d.uid, d.type]));
    for (const { file, dashboard } of all) {
      const refs = datasourceRefs(JSON.parse(render(dashboard)));
      // Panels, targets, variables and annotations: none may fall back to an unnamed default.
      const targets = dashboard.panels.reduce((n, p) => n + p.targets.length, 0);
      expect(refs.length, file).toBe(
        dashboard.panels.length +
          targets +
          dashboard.templating.list.filter((v) => v.type === "query").length +
          dashboard.annotations.list.length,
      );
      for (const { path, ref } of refs) {
        const { uid, type } = ref as { uid: string; type: string };
        expect(provisioned.get(uid), `${file} ${path} → ${uid}`).toBe(type);
      }
    }
  });

  it("writes Flux that Grafana fills in: its range, window, bucket and the dashboard's variables", () => {
    for (const { dashboard } of all) {
      const variables = new Set(dashboard.templating.list.map((v) => v.name));
      for (const { where, query } of queries(dashboard)) {
        const at = `${dashboard.uid} ${where}`;
        expect(query, at).toContain("v.defaultBucket");
        expect(query, at).toContain("v.timeRangeStop");
        for (const [, bucket] of query.matchAll(/from\(bucket: ([^)]+)\)/g)) {
          expect(["v.defaultBucket", "rawBucket", "rollupBucket", 'v.defaultBucket + "_1m"'], at).toContain(
            bucket,
          );
        }
        for (const [, name, format] of query.matchAll(/\$\{(?!__)(\w+)(?::(\w+))?\}/g)) {
          expect(variables, at).toContain(name);
          // Formats used must be Grafana's and handled by grafana/interpolate.ts.
          if (format !== undefined) expect(["pipe"], at).toContain(format);
        }
      }
      for (const panel of dashboard.panels) {
        for (const [, name] of `${panel.title} ${JSON.stringify(panel.fieldConfig)}`.matchAll(
          /\$\{(?!__)(\w+)\}/g,
        )) {
          expect(variables, `${dashboard.uid} ${panel.title}`).toContain(name);
        }
      }
    }
  });

  it("asks InfluxDB only in shapes it runs in storage: range and filters, then a pushed-down aggregate", () => {
    let reads = 0;
    for (const { dashboard } of all) {
      for (const { where, query } of queries(dashboard)) {
        expect(pushdownProblems(query), `${dashboard.uid} ${where}`).toEqual([]);
        reads += [...query.matchAll(/\bfrom\(/g)].length;
      }
    }
    expect(reads).toBeGreaterThan(50);
  });

  it("has a pushdown check that fails on the shapes that read every point", () => {
    const head =
      'from(bucket: "b")\n  |> range(start: 0, stop: 1)\n  |> filter(fn: (r) => r._measurement == "m")';
    const bad = {
      "no aggregate": head,
      "map first": `${head}\n  |> map(fn: (r) => r)\n  |> sum()`,
      "pivot first": `${head}\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n  |> last()`,
      "group first": `${head}\n  |> group()\n  |> mean()`,
      "unpushable fn": `${head}\n  |> aggregateWindow(every: 1m, fn: median, createEmpty: false)`,
      "empty windows": `${head}\n  |> aggregateWindow(every: 1m, fn: mean)`,
      "contains()":
        'from(bucket: "b")\n  |> range(start: 0)\n  |> filter(fn: (r) => contains(value: r.s, set: ["a"]))\n  |> count()',
      "a variable on the right":
        'from(bucket: "b")\n  |> range(start: 0)\n  |> filter(fn: (r) => r.s == x)\n  |> count()',
      "hopping window": `${head}\n  |> window(every: 1m, period: 5m)\n  |> mean()`,
      "no range": 'from(bucket: "b")\n  |> filter(fn: (r) => r.s == "a")\n  |> count()',
    };
    for (const [what, flux] of Object.entries(bad)) expect(pushdownProblems(flux), what).toHaveLength(1);
    const good = [
      `${head}\n  |> aggregateWindow(every: every, fn: mean, createEmpty: false, timeSrc: "_start")\n  |> map(fn: (r) => r)`,
      `${head.replace('"m")', '"m" and (r.a == "x" or r.a =~ /y/) and r._value > 0.0)')}\n  |> last()\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`,
      `${head}\n  |> window(every: every)\n  |> last()\n  |> group()`,
      `${head}\n  |> keep(columns: ["sensor_id"])\n  |> group()\n  |> distinct(column: "sensor_id")`,
    ];
    for (const flux of good) expect(pushdownProblems(flux), flux).toEqual([]);
    // Grouped in storage (ReadGroupAggregate): count, sum and max per group of tags.
    const grouped = [
      `${head}\n  |> group()\n  |> count()`,
      `${head}\n  |> group(columns: ["sensor_id"])\n  |> max()\n  |> group()`,
    ];
    for (const flux of grouped) expect(pushdownProblems(flux), flux).toEqual([]);
    expect(pushdownProblems(`${head}\n  |> group(columns: ["a"], mode: "except")\n  |> sum()`)).toHaveLength(
      1,
    );
  });

  it("sets maxDataPoints on every panel and keeps each windowed query's windows within it", () => {
    for (const { dashboard } of all) {
      for (const panel of dashboard.panels) {
        const at = `${dashboard.uid} ${panel.title}`;
        expect(panel.maxDataPoints, at).toBeGreaterThan(0);
        for (const t of panel.targets) {
          // windowing(): the range is cut into at most maxWindows windows, written as spanNs / (maxWindows - 1).
          for (const [, budget] of t.query.matchAll(/least = spanNs \/ (\d+) \+ 1/g)) {
            expect(Number(budget) + 1, at).toBeLessThanOrEqual(panel.maxDataPoints);
          }
          if (panel.type === "timeseries")
            expect(t.query, at).toMatch(/everyNs = if int\(v: v\.windowPeriod\)/);
        }
      }
    }
  });

  it("caps the series of every panel that shows one per sensor, and says so", () => {
    let capped = 0;
    for (const { dashboard } of all) {
      for (const panel of dashboard.panels) {
        const perSensor =
          JSON.stringify(panel.fieldConfig).includes("__field.labels.sensor_id") ||
          JSON.stringify(panel.transformations ?? []).includes('"sensor_id"');
        const oneSensor = panel.targets.every((t) => t.query.includes(quoted("sensor")));
        if (!perSensor || oneSensor) continue;
        const at = `${dashboard.uid} ${panel.title}`;
        for (const t of panel.targets) {
          // Its own limit, or the one of the hidden variable whose sensors it filters on.
          const variable = /r\.sensor_id =~ \/\^\(\$\{(\w+):pipe\}\)\$\//.exec(t.query)?.[1];
          const set = dashboard.templating.list.find((v) => v.name === variable);
          const limited = set?.type === "query" ? set.query.query : t.query;
          const n = /limit\(n: (\d+)\)/.exec(limited)?.[1];
          expect(n, `${at} limits its series or rows`).toBeDefined();
          expect(panel.description, at).toContain(String(n));
        }
        capped++;
      }
    }
    expect(capped).toBeGreaterThanOrEqual(4);
  });

  it("sets a time range, a refresh, units and a description on every panel", () => {
    for (const { dashboard } of all) {
      expect(dashboard.refresh).toBe("10s");
      expect(dashboard.time.from).toMatch(/^now-\d+[mhd]$/);
      for (const panel of dashboard.panels) {
        const at = `${dashboard.uid} ${panel.title}`;
        expect(panel.description.length, at).toBeGreaterThan(10);
        expect(panel.gridPos.x + panel.gridPos.w, at).toBeLessThanOrEqual(24);
        const d = panel.fieldConfig.defaults;
        expect(d.unit !== undefined || d.decimals !== undefined, `${at} has a unit or decimals`).toBe(true);
      }
    }
  });
});

describe("Grafana provisioning", () => {
  it("provisions the InfluxDB datasource for Flux, from the grafana service's environment", async () => {
    const file = await datasourceFile();
    expect(file.apiVersion).toBe(1);
    expect(file.datasources).toHaveLength(1);
    const [ds] = file.datasources;
    expect(ds).toMatchObject({
      uid: "influxdb",
      type: "influxdb",
      access: "proxy",
      url: "$INFLUX_URL",
      isDefault: true,
      jsonData: { version: "Flux", organization: "$INFLUX_ORG", defaultBucket: "$INFLUX_BUCKET" },
      // The read-only token the influxdb container creates at setup, never the operator token.
      secureJsonData: { token: "$__file{/run/influx-tokens/grafana-read-token}" },
    });
    // The token is a secret: it must never sit in jsonData, where the UI and API show it.
    expect(JSON.stringify(ds?.jsonData)).not.toMatch(/token/i);

    const grafana = (await composeFile()).services.grafana;
    const text = (await readFile(new URL("datasources/influxdb.yaml", PROVISIONING_DIR), "utf8")).replace(
      /#.*$/gm,
      "",
    );
    // $NAME and ${NAME} come from the environment; $__file{...} is Grafana's own expansion.
    const used = [...text.matchAll(/\$\{?([A-Z][A-Z0-9_]*)\}?/g)].map((m) => m[1]);
    expect(text).toContain("$__file{/run/influx-tokens/grafana-read-token}");
    expect(used.sort()).toEqual(["INFLUX_BUCKET", "INFLUX_ORG", "INFLUX_URL"]);
    for (const name of used) expect(Object.keys(grafana?.environment ?? {})).toContain(name);
    // The token file comes from the volume the influxdb init script writes it to.
    const compose = await composeFile();
    expect(grafana?.volumes ?? []).toContain("influx-tokens:/run/influx-tokens:ro");
    expect(compose.services.influxdb?.volumes ?? []).toEqual(
      expect.arrayContaining([
        "influx-tokens:/run/influx-tokens",
        "./grafana/provisioning/influxdb-init:/docker-entrypoint-initdb.d:ro",
      ]),
    );
  });

  it("loads the dashboards from where docker-compose.yml mounts them", async () => {
    const file = await providerFile();
    expect(file.apiVersion).toBe(1);
    expect(file.providers).toHaveLength(1);
    expect(file.providers[0]).toMatchObject({
      type: "file",
      options: { path: "/var/lib/grafana/dashboards" },
    });

    const volumes = (await composeFile()).services.grafana?.volumes ?? [];
    expect(volumes).toContain("./grafana/dashboards:/var/lib/grafana/dashboards:ro");
    expect(volumes).toContain("./grafana/provisioning:/etc/grafana/provisioning:ro");
  });
});
