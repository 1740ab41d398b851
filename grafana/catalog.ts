/**
 * Every provisioned dashboard and the file it is written to. `npm run dashboards` writes them;
 * test/unit/grafana-dashboards.test.ts fails when a committed file differs from what this renders.
 */
import { alertsDashboard } from "./alerts.js";
import { fleetOverview } from "./fleet-overview.js";
import type { Dashboard } from "./model.js";
import { pipelineHealth } from "./pipeline-health.js";
import { sensorDetail } from "./sensor-detail.js";

export const DASHBOARDS_DIR = new URL("./dashboards/", import.meta.url);
export const PROVISIONING_DIR = new URL("./provisioning/", import.meta.url);

export function dashboards(): { file: string; dashboard: Dashboard }[] {
  return [
    { file: "fleet-overview.json", dashboard: fleetOverview() },
    { file: "sensor-detail.json", dashboard: sensorDetail() },
    { file: "alerts.json", dashboard: alertsDashboard() },
    { file: "pipeline-health.json", dashboard: pipelineHealth() },
  ];
}

/** The exact bytes of a dashboard file. */
export function render(dashboard: Dashboard): string {
  return `${JSON.stringify(dashboard, null, 2)}\n`;
}
