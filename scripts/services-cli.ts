/**
 * `npm run services -- build`: fetch Kafka and build influxd into the cache (CI does this first).
 * `npm run services -- start [dir]`: start both and print their environment; Ctrl-C stops them.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startLocalServices } from "./services/local.js";

const HERE = fileURLToPath(new URL("./services/", import.meta.url));
const [command = "build", dir = join(fileURLToPath(new URL("..", import.meta.url)), ".data", "services")] =
  process.argv.slice(2);

if (command === "build") {
  for (const script of ["fetch-kafka.sh", "build-influxd.sh"]) {
    const result = spawnSync("bash", [join(HERE, script)], { stdio: "inherit" });
    if (result.status !== 0) process.exit(result.status ?? 1);
  }
} else if (command === "start") {
  const services = await startLocalServices(dir);
  for (const [k, v] of Object.entries(services.env)) console.log(`${k}=${v}`);
  const stop = async () => {
    await services.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
} else {
  console.error(`unknown command ${command}: use build or start`);
  process.exit(2);
}
