/**
 * Replays a Dockerfile without a Docker engine: each stage gets its own directory standing for the
 * image's root, and FROM, ARG, ENV, WORKDIR, COPY (honouring .dockerignore, and `--from=<stage>`)
 * and RUN are carried out there, in order, with this machine's Node standing in for the base image's.
 * What only the container runtime acts on (USER, EXPOSE, HEALTHCHECK, LABEL) is recorded, not done.
 */
import { execFile } from "node:child_process";
import { cp, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, posix, relative } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

/** Parses instructions: comments and blank lines dropped, `\` continuations joined. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const first = i + 1;
    let current = (lines[i] as string).trim();
    if (current === "" || current.startsWith("#")) continue;
    while (current.endsWith("\\") && i + 1 < lines.length) {
      current = current.slice(0, -1);
      i++;
      const next = (lines[i] as string).trim();
      if (next.startsWith("#")) continue;
      current += ` ${next}`;
    }
    const match = /^(\S+)\s*(.*)$/s.exec(current) as RegExpExecArray;
    if (
      /<<-?\s*\w/.test(match[2] as string) &&
      ["RUN", "COPY"].includes((match[1] as string).toUpperCase())
    ) {
      throw new Error(`Dockerfile line ${first}: heredocs are not supported by the replay`);
    }
    out.push({ keyword: (match[1] as string).toUpperCase(), args: (match[2] as string).trim(), line: first });
  }
  return out;
}

/** `${NAME}`, `${NAME:-default}` and `$NAME` from the given variables, as the builder substitutes them. */
export function substitute(text: string, vars: Record<string, string>): string {
  return text.replace(
    /\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g,
    (_, braced?: string, fallback?: string, bare?: string) => {
      const value = vars[(braced ?? bare) as string];
      return value !== undefined && value !== "" ? value : (fallback ?? "");
    },
  );
}

/** `KEY=value KEY2="x y"` (or the legacy `KEY value`) as pairs. */
function keyValues(args: string, legacyForm: boolean): [string, string][] {
  if (legacyForm && !/^\w+=/.test(args)) {
    const [key, ...rest] = args.split(/\s+/);
    return [[key as string, rest.join(" ")]];
  }
  return [...args.matchAll(/(\w+)(?:=("(?:[^"\\]|\\.)*"|'[^']*'|\S*))?/g)].map((m) => {
    const raw = m[2] ?? "";
    const value = /^["']/.test(raw) ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
    return [m[1] as string, value];
  });
}

function jsonArray(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  const parsed = JSON.parse(args) as unknown;
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
    throw new Error(`expected a JSON array of strings, got ${args}`);
  }
  return parsed;
}

/** Flags like `--from=build` in front of COPY's arguments, and the rest split into words. */
function flagsAndWords(args: string): { flags: Record<string, string>; words: string[] } {
  const flags: Record<string, string> = {};
  const exec = jsonArray(args.replace(/^(--\S+\s+)+/, ""));
  const words = args.split(/\s+/).filter((w) => w !== "");
  while (words[0]?.startsWith("--")) {
    const [name, value = ""] = (words.shift() as string).slice(2).split(/=(.*)/s);
    flags[name as string] = value;
  }
  return { flags, words: exec ?? words };
}

/** .dockerignore rules: patterns from the context root, `*`, `?` and `**`, `!` re-includes; last match wins. */
export function dockerignore(text: string): (path: string) => boolean {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, "")).replace(/\/+$/, "");
      const source = pattern
        .split(/(\*\*\/?|\*|\?)/)
        .map((part) =>
          part === "**/" || part === "**"
            ? "(?:.*/)?"
            : part === "*"
              ? "[^/]*"
              : part === "?"
                ? "[^/]"
                : part.replace(/[.+^${}()|[\]\\]/g, "\\$&"),
        )
        .join("");
      return { negate, re: new RegExp(`^${source}$`) };
    });
  return (path) => {
    // A path is out when it, or a directory above it, matches.
    const candidates = path.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) {
      if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate;
    }
    return excluded;
  };
}

export interface Stage {
  name: string;
  /** The base image as written after substitution, e.g. `node:20-bookworm-slim`. */
  image: string;
  /** The directory standing for this stage's `/`. */
  root: string;
  env: Record<string, string>;
  args: Record<string, string>;
  workdir: string;
  cmd?: string[];
  /** Instructions recorded but not carried out, with the reason. */
  skipped: { keyword: string; args: string; why: string }[];
}

export interface ReplayOptions {
  context: string;
  /** An empty directory; each stage gets a subdirectory. */
  into: string;
  /** Environment every RUN also gets (e.g. npm's cache settings); never overrides ENV. */
  runEnv?: Record<string, string>;
  log?: (line: string) => void;
}

/** Only the container runtime acts on these; a build does nothing with them that a replay could. */
const RUNTIME_ONLY: Record<string, string> = {
  USER: "the user the container runs as; the replay runs as the test's own user",
  EXPOSE: "documents ports; publishing them is the runtime's job",
  HEALTHCHECK: "run by the container runtime, not by the build",
  LABEL: "image metadata, no effect on the files or the commands",
};

/** The PATH of the official node images, with this machine's node in front. */
function basePath(): string {
  return `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
}

/** The environment a process in the stage sees: the base image's PATH and HOME, then the stage's ENV. */
export function stageEnvironment(stage: Stage, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: basePath(), HOME: homedir(), ...extra, ...stage.env };
}

function inStage(stage: Stage, path: string, workdir = stage.workdir): string {
  const absolute = posix.resolve(workdir, path);
  return join(stage.root, absolute);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function copyFiltered(
  source: string,
  target: string,
  ignored: (contextPath: string) => boolean,
  contextRoot: string,
): Promise<void> {
  const relativePath = relative(contextRoot, source).split("\\").join("/");
  if (relativePath !== "" && ignored(relativePath)) return;
  const info = await stat(source);
  if (info.isDirectory()) {
    await mkdir(target, { recursive: true });
    for (const entry of await readdir(source)) {
      await copyFiltered(join(source, entry), join(target, entry), ignored, contextRoot);
    }
  } else {
    await mkdir(dirname(target), { recursive: true });
    await cp(source, target);
  }
}

/** Carries out the Dockerfile and returns every stage, the last one being the image. */
export async function replayDockerfile(options: ReplayOptions): Promise<Stage[]> {
  const { context, into } = options;
  const log = options.log ?? (() => {});
  const instructions = parseDockerfile(await readFile(join(context, "Dockerfile"), "utf8"));
  const ignoreText = await readFile(join(context, ".dockerignore"), "utf8").catch(() => "");
  const ignored = dockerignore(ignoreText);
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  let stage: Stage | undefined;

  for (const { keyword, args, line } of instructions) {
    const where = `Dockerfile line ${line} (${keyword} ${args})`;
    const vars = stage ? { ...stage.args, ...stage.env } : globalArgs;
    if (keyword === "FROM") {
      const [imageRaw, as, name] = substitute(args, globalArgs)
        .replace(/^--platform=\S+\s+/, "")
        .split(/\s+/);
      const image = imageRaw as string;
      const stageName = as?.toUpperCase() === "AS" && name ? name : String(stages.length);
      const root = join(into, `stage-${stages.length}-${stageName}`);
      const parent = stages.find((s) => s.name === image);
      if (parent) await cp(parent.root, root, { recursive: true });
      else await mkdir(root, { recursive: true });
      stage = {
        name: stageName,
        image: parent ? parent.image : image,
        root,
        env: parent ? { ...parent.env } : {},
        args: {},
        workdir: parent ? parent.workdir : "/",
        skipped: [],
      };
      stages.push(stage);
      log(`FROM ${image} as ${stageName}`);
      continue;
    }
    if (keyword === "ARG") {
      for (const [key, value] of keyValues(args, false)) {
        const target = stage ? stage.args : globalArgs;
        // An ARG without a default inside a stage takes the global one of that name, if any.
        target[key] = value !== "" ? substitute(value, vars) : (globalArgs[key] ?? "");
      }
      continue;
    }
    if (!stage) throw new Error(`${where}: only ARG may come before the first FROM`);
    if (keyword === "ENV") {
      for (const [key, value] of keyValues(args, true)) stage.env[key] = substitute(value, vars);
    } else if (keyword === "WORKDIR") {
      stage.workdir = posix.resolve(stage.workdir, substitute(args, vars));
      await mkdir(inStage(stage, "."), { recursive: true });
    } else if (keyword === "COPY") {
      const { flags, words } = flagsAndWords(substitute(args, vars));
      const unsupported = Object.keys(flags).filter((f) => !["from", "chown", "chmod", "link"].includes(f));
      if (unsupported.length > 0) throw new Error(`${where}: COPY flags not supported: ${unsupported}`);
      const dest = words.at(-1) as string;
      const sources = words.slice(0, -1);
      if (sources.length === 0) throw new Error(`${where}: COPY needs a source and a destination`);
      const from = flags.from ? stages.find((s) => s.name === flags.from) : undefined;
      if (flags.from && !from) throw new Error(`${where}: no earlier stage named ${flags.from}`);
      for (const source of sources) {
        if (/[*?[]/.test(source)) throw new Error(`${where}: wildcards in COPY sources are not supported`);
        const origin = from ? join(from.root, posix.resolve(from.workdir, source)) : join(context, source);
        if (!from && relative(context, origin).startsWith("..")) {
          throw new Error(`${where}: ${source} is outside the build context`);
        }
        if (!(await exists(origin))) throw new Error(`${where}: ${source} does not exist`);
        const isDir = (await stat(origin)).isDirectory();
        // Docker copies a directory's contents; a file goes into `dest` when dest ends with /.
        const target =
          isDir || !dest.endsWith("/")
            ? inStage(stage, dest)
            : join(inStage(stage, dest), posix.basename(source));
        if (from) await cp(origin, target, { recursive: true });
        else await copyFiltered(origin, target, ignored, context);
      }
    } else if (keyword === "RUN") {
      if (/^--/.test(args)) throw new Error(`${where}: RUN flags (--mount, ...) are not supported`);
      const exec = jsonArray(args);
      const command = exec ?? ["/bin/sh", "-c", args];
      // Absolute paths inside a command would reach this machine's real filesystem, not the stage's.
      if (/(^|[\s='"])\/(?!\/)/.test(exec ? exec.slice(1).join(" ") : args)) {
        throw new Error(`${where}: the replay runs RUN only with paths relative to WORKDIR`);
      }
      log(`RUN ${args}`);
      const started = Date.now();
      try {
        await run(command[0] as string, command.slice(1), {
          cwd: inStage(stage, "."),
          env: stageEnvironment(stage, { ...options.runEnv, ...stage.args }),
          maxBuffer: 64 * 1024 * 1024,
        });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        throw new Error(`${where} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
      }
      log(`  done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } else if (keyword === "CMD") {
      const exec = jsonArray(args);
      stage.cmd = exec ?? ["/bin/sh", "-c", args];
    } else if (keyword in RUNTIME_ONLY) {
      stage.skipped.push({ keyword, args, why: RUNTIME_ONLY[keyword] as string });
    } else {
      // ADD, ENTRYPOINT, SHELL, VOLUME, ... change what the image is or runs: teach the replay first.
      throw new Error(`${where}: ${keyword} is not supported by the replay`);
    }
  }
  if (stages.length === 0) throw new Error("the Dockerfile has no FROM");
  return stages;
}

/** Where a path inside the image is in the replay. */
export function imagePath(stage: Stage, path: string): string {
  return inStage(stage, path);
}
