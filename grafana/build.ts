/** Writes grafana/dashboards/*.json from the TypeScript definitions: `npm run dashboards`. */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { DASHBOARDS_DIR, dashboards, render } from "./catalog.js";

const rendered = dashboards();
const files = new Set(rendered.map((d) => d.file));
await mkdir(DASHBOARDS_DIR, { recursive: true });
// A dashboard dropped from the catalog must disappear from Grafana too.
for (const name of await readdir(DASHBOARDS_DIR)) {
  if (name.endsWith(".json") && !files.has(name)) await rm(new URL(name, DASHBOARDS_DIR));
}
for (const { file, dashboard } of rendered) {
  await writeFile(new URL(file, DASHBOARDS_DIR), render(dashboard));
  console.log(`grafana/dashboards/${file}: ${dashboard.title} (${dashboard.panels.length} panels)`);
}
