/**
 * How a long-running process of this project hears that it should stop.
 *
 * Alone (`npm run ingest`, a container): SIGTERM or SIGINT. Started by `npm start`, which talks to
 * its children over an IPC channel: a terminal's Ctrl-C reaches every process of its group at once,
 * but the children must stop in order (simulator, worker, API), so SIGINT is left to `npm start`,
 * which sends SIGTERM to each in turn. Losing that channel (npm start killed) stops the process
 * too, so nothing is left running behind it.
 */
export function onStopRequest(stop: (reason: string) => void): void {
  process.on("SIGTERM", () => stop("SIGTERM"));
  if (process.send === undefined) {
    process.on("SIGINT", () => stop("SIGINT"));
    return;
  }
  process.on("SIGINT", () => {});
  process.on("disconnect", () => stop("npm start went away"));
  // It may have gone while this process was still loading, before anyone listened.
  if (!process.connected) stop("npm start went away");
  // The channel alone must not keep a finished process (a simulator with --count) alive.
  process.channel?.unref();
}
