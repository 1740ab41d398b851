/**
 * The slice of Grafana's dashboard JSON model (schemaVersion 39, Grafana 11) the dashboards use, and
 * small builders over it. Panels are laid out in rows; ids and grid positions are derived, so a
 * dashboard file reads as "what is shown", not "where it sits".
 */

/** The datasource provisioned in grafana/provisioning/datasources/influxdb.yaml. */
export const DATASOURCE = { type: "influxdb", uid: "influxdb" } as const;
export type DatasourceRef = typeof DATASOURCE;

/** `${name}`: a dashboard variable or a Grafana built-in, which Grafana replaces before use. */
export const grafanaVariable = (name: string): string => `\${${name}}`;

/** The value of a series label (a tag column of the Flux result), for display names and links. */
export const seriesLabel = (label: string): string => grafanaVariable(`__field.labels.${label}`);

/** Every dashboard of the product carries this tag, so each can link to the others. */
export const PRODUCT_TAG = "sensor-analytics";

export interface FluxTarget {
  refId: string;
  datasource: DatasourceRef;
  query: string;
}

export interface ThresholdStep {
  color: string;
  value: number | null;
}

export interface FieldDefaults {
  unit?: string;
  decimals?: number;
  min?: number;
  noValue?: string;
  displayName?: string;
  color?: { mode: string; fixedColor?: string };
  thresholds?: { mode: "absolute"; steps: ThresholdStep[] };
  mappings?: ValueMapping[];
  links?: DataLink[];
  custom?: Record<string, unknown>;
}

export interface FieldOverride {
  matcher: { id: "byName"; options: string };
  properties: { id: string; value: unknown }[];
}

export interface ValueMapping {
  type: "value";
  options: Record<string, { color?: string; text?: string; index: number }>;
}

export interface DataLink {
  title: string;
  url: string;
}

export interface Transformation {
  id: string;
  options: Record<string, unknown>;
}

export type PanelType = "timeseries" | "stat" | "table";

export interface Panel {
  id: number;
  type: PanelType;
  title: string;
  description: string;
  datasource: DatasourceRef;
  gridPos: { x: number; y: number; w: number; h: number };
  /** Lower bound for v.windowPeriod in this panel (Grafana's "Min interval"). */
  interval?: string;
  /** Grafana derives v.windowPeriod from it; the panel's queries return at most this many points per series. */
  maxDataPoints: number;
  fieldConfig: { defaults: FieldDefaults; overrides: FieldOverride[] };
  options: Record<string, unknown>;
  targets: FluxTarget[];
  transformations?: Transformation[];
}

/** A panel before layout: its width and height, no id or position yet. */
export type PanelSpec = Omit<Panel, "id" | "gridPos"> & { w: number; h: number };

export interface QueryVariable {
  type: "query";
  name: string;
  label: string;
  description: string;
  datasource: DatasourceRef;
  query: { refId: string; query: string };
  definition: string;
  /** 2: re-run when the time range changes, so the list holds what the range holds. */
  refresh: 2;
  /** 7: natural order, so sensor_2 comes before sensor_10. */
  sort: 7;
  multi: false;
  /** true: the variable stands for all its values (Grafana's "All", hidden), a set the panels filter on. */
  includeAll: boolean;
  /** 0: shown; 2: hidden (a set computed for the panels, not a choice). */
  hide: 0 | 2;
  current: { text: string; value: string } | Record<string, never>;
  options: [];
}

/** Grafana's value of an includeAll variable standing for all its values. */
export const ALL_VALUE = "$__all";

/** A fixed list of values, e.g. which tier the readings panels read. */
export interface CustomVariable {
  type: "custom";
  name: string;
  label: string;
  description: string;
  query: string;
  current: { text: string; value: string };
  options: { text: string; value: string; selected: boolean }[];
  multi: false;
  includeAll: false;
  hide: 0;
}

export type Variable = QueryVariable | CustomVariable;

export interface Annotation {
  name: string;
  enable: true;
  hide: false;
  iconColor: string;
  datasource: DatasourceRef;
  target: { refId: string; query: string };
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  tags: string[];
  editable: false;
  graphTooltip: 1;
  timezone: "browser";
  time: { from: string; to: string };
  refresh: string;
  timepicker: { refresh_intervals: string[] };
  schemaVersion: 39;
  version: 1;
  links: {
    title: string;
    type: "dashboards";
    tags: string[];
    asDropdown: true;
    includeVars: false;
    keepTime: true;
  }[];
  annotations: { list: Annotation[] };
  templating: { list: Variable[] };
  panels: Panel[];
}

export function target(query: string, refId = "A"): FluxTarget {
  return { refId, datasource: DATASOURCE, query };
}

export const thresholds = (...steps: [string, number | null][]): FieldDefaults["thresholds"] => ({
  mode: "absolute",
  steps: steps.map(([color, value]) => ({ color, value })),
});

export const GREEN_ONLY = thresholds(["green", null]);

interface PanelOptions {
  title: string;
  description: string;
  w: number;
  h: number;
  targets: FluxTarget[];
  maxDataPoints: number;
  defaults?: FieldDefaults;
  overrides?: FieldOverride[];
  interval?: string;
}

function panel(type: PanelType, o: PanelOptions, options: Record<string, unknown>): PanelSpec {
  return {
    type,
    title: o.title,
    description: o.description,
    datasource: DATASOURCE,
    w: o.w,
    h: o.h,
    ...(o.interval === undefined ? {} : { interval: o.interval }),
    maxDataPoints: o.maxDataPoints,
    fieldConfig: { defaults: { thresholds: GREEN_ONLY, ...o.defaults }, overrides: o.overrides ?? [] },
    options,
    targets: o.targets,
  };
}

export type DrawStyle = "line" | "bars" | "points";

export function timeseries(
  o: PanelOptions & { draw?: DrawStyle; stack?: boolean; step?: boolean; thresholdLines?: boolean },
): PanelSpec {
  const draw = o.draw ?? "line";
  const custom = {
    drawStyle: draw,
    lineWidth: 1,
    fillOpacity: draw === "bars" ? 80 : 10,
    pointSize: draw === "points" ? 7 : 4,
    showPoints: draw === "points" ? "always" : "never",
    lineInterpolation: o.step ? "stepAfter" : "linear",
    spanNulls: false,
    stacking: { mode: o.stack ? "normal" : "none", group: "A" },
    thresholdsStyle: { mode: o.thresholdLines ? "dashed" : "off" },
  };
  return panel(
    "timeseries",
    {
      ...o,
      defaults: {
        color: { mode: "palette-classic" },
        ...o.defaults,
        custom: { ...custom, ...o.defaults?.custom },
      },
    },
    {
      legend: { displayMode: "list", placement: "bottom", showLegend: true },
      tooltip: { mode: "multi", sort: "desc" },
    },
  );
}

export function stat(o: PanelOptions): PanelSpec {
  return panel(
    "stat",
    { ...o, defaults: { color: { mode: "thresholds" }, ...o.defaults } },
    {
      reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
      colorMode: "background",
      graphMode: "none",
      justifyMode: "center",
      textMode: "value",
      orientation: "auto",
    },
  );
}

/**
 * A table whose columns are exactly `columns`, in that order and under those headers. The Flux
 * must yield these columns; the integration test holds it to that.
 */
export function table(
  o: PanelOptions & { columns: [name: string, header: string][]; sortBy?: string },
): PanelSpec {
  const indexByName = Object.fromEntries(o.columns.map(([name], i) => [name, i]));
  const renameByName = Object.fromEntries(o.columns.map(([name, header]) => [name, header]));
  const spec = panel("table", o, {
    showHeader: true,
    cellHeight: "sm",
    footer: { show: false, reducer: ["sum"], fields: "" },
    ...(o.sortBy === undefined ? {} : { sortBy: [{ displayName: o.sortBy, desc: true }] }),
  });
  spec.transformations = [{ id: "organize", options: { excludeByName: {}, indexByName, renameByName } }];
  return spec;
}

/** Columns of a table panel, in order; what `keep()` in its Flux must list. */
export function tableColumns(p: PanelSpec | Panel): string[] {
  const organize = p.transformations?.find((t) => t.id === "organize");
  const index = (organize?.options.indexByName ?? {}) as Record<string, number>;
  return Object.keys(index).sort((a, b) => (index[a] ?? 0) - (index[b] ?? 0));
}

export function override(name: string, properties: Record<string, unknown>): FieldOverride {
  return {
    matcher: { id: "byName", options: name },
    properties: Object.entries(properties).map(([id, value]) => ({ id, value })),
  };
}

/** Colours for alert severities and states, the same on every dashboard. */
export const SEVERITY_COLORS = { critical: "red", warning: "orange", info: "blue" } as const;
export const STATE_COLORS = { firing: "red", resolved: "green" } as const;

export function colorMapping(colors: Record<string, string>): ValueMapping {
  return {
    type: "value",
    options: Object.fromEntries(
      Object.entries(colors).map(([value, color], index) => [value, { color, index }]),
    ),
  };
}

export function queryVariable(o: {
  name: string;
  label: string;
  description: string;
  query: string;
  current?: string;
  /** Stands for all the values its query returns, hidden: a set the panels filter on. */
  all?: true;
}): QueryVariable {
  return {
    type: "query",
    name: o.name,
    label: o.label,
    description: o.description,
    datasource: DATASOURCE,
    query: { refId: "InfluxVariableQueryEditor-VariableQuery", query: o.query },
    definition: o.query,
    refresh: 2,
    sort: 7,
    multi: false,
    includeAll: o.all === true,
    hide: o.all === true ? 2 : 0,
    current:
      o.all === true
        ? { text: "All", value: ALL_VALUE }
        : o.current === undefined
          ? {}
          : { text: o.current, value: o.current },
    options: [],
  };
}

export function customVariable(o: {
  name: string;
  label: string;
  description: string;
  values: readonly string[];
}): CustomVariable {
  const [first = ""] = o.values;
  return {
    type: "custom",
    name: o.name,
    label: o.label,
    description: o.description,
    query: o.values.join(","),
    current: { text: first, value: first },
    options: o.values.map((v) => ({ text: v, value: v, selected: v === first })),
    multi: false,
    includeAll: false,
    hide: 0,
  };
}

/**
 * An annotation from Flux. The query must yield one table with the columns `_time`, `title`,
 * `text` and `tags` (comma-separated) only: Grafana takes the first time column as the time.
 */
export function annotation(o: { name: string; color: string; query: string }): Annotation {
  return {
    name: o.name,
    enable: true,
    hide: false,
    iconColor: o.color,
    datasource: DATASOURCE,
    target: { refId: o.name.replace(/\W+/g, ""), query: o.query },
  };
}

/** Lays rows of panels out on Grafana's 24-column grid and numbers them. */
export function layout(rows: PanelSpec[][]): Panel[] {
  const panels: Panel[] = [];
  let y = 0;
  for (const row of rows) {
    let x = 0;
    let height = 0;
    for (const { w, h, ...rest } of row) {
      if (x + w > 24) throw new Error(`panel "${rest.title}" does not fit: row is ${x + w} columns wide`);
      panels.push({ ...rest, id: panels.length + 1, gridPos: { x, y, w, h } });
      x += w;
      height = Math.max(height, h);
    }
    y += height;
  }
  return panels;
}

export function dashboard(o: {
  uid: string;
  title: string;
  description: string;
  time?: string;
  refresh?: string;
  rows: PanelSpec[][];
  variables?: Variable[];
  annotations?: Annotation[];
}): Dashboard {
  return {
    uid: o.uid,
    title: o.title,
    description: o.description,
    tags: [PRODUCT_TAG],
    editable: false,
    graphTooltip: 1,
    timezone: "browser",
    time: { from: o.time ?? "now-1h", to: "now" },
    refresh: o.refresh ?? "10s",
    timepicker: { refresh_intervals: ["5s", "10s", "30s", "1m", "5m", "15m"] },
    schemaVersion: 39,
    version: 1,
    links: [
      {
        title: "Sensor analytics",
        type: "dashboards",
        tags: [PRODUCT_TAG],
        asDropdown: true,
        includeVars: false,
        keepTime: true,
      },
    ],
    annotations: { list: o.annotations ?? [] },
    templating: { list: o.variables ?? [] },
    panels: layout(o.rows),
  };
}
