/**
 * InfluxDB's annotated CSV (the answer of /api/v2/query), parsed as it streams in, synchronously
 * per chunk: one string array per row, no object and no promise per row. Tables are separated by
 * a blank line and start with `#datatype`, `#group` and `#default` rows, then a header; a table
 * whose header is `error,reference` is a query that failed after its answer began.
 */

export interface CsvTable {
  /** Column labels, the leading annotation column left out. */
  labels: string[];
  /** Each column's `#default` value ("" when none). */
  defaults: string[];
}

export class FluxQueryError extends Error {
  override name = "FluxQueryError";
}

export class AnnotatedCsv {
  private readonly decoder = new TextDecoder();
  private rest = "";
  private defaults: string[] = [];
  private table: CsvTable | undefined;
  private error = false;

  constructor(private readonly onRow: (values: string[], table: CsvTable) => void) {}

  push(chunk: Uint8Array): void {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    let start = 0;
    let from = 0;
    for (;;) {
      const nl = text.indexOf("\n", from);
      if (nl < 0) break;
      const line = text.slice(start, nl);
      // A newline inside quotes (a value holding one) does not end the line.
      if (line.indexOf('"') >= 0 && quotesIn(line) % 2 === 1) {
        from = nl + 1;
        continue;
      }
      this.line(line.endsWith("\r") ? line.slice(0, -1) : line);
      start = nl + 1;
      from = start;
    }
    this.rest = text.slice(start);
  }

  end(): void {
    const last = this.rest + this.decoder.decode();
    this.rest = "";
    if (last !== "") this.line(last.endsWith("\r") ? last.slice(0, -1) : last);
  }

  private line(line: string): void {
    if (line === "") {
      this.table = undefined;
      this.defaults = [];
      return;
    }
    const cells = line.indexOf('"') < 0 ? line.split(",") : splitQuoted(line);
    if (this.table === undefined) {
      const first = cells[0] ?? "";
      if (first.startsWith("#")) {
        if (first === "#default") this.defaults = cells.slice(1);
        return;
      }
      const labels = cells.slice(1);
      this.table = { labels, defaults: labels.map((_, i) => this.defaults[i] ?? "") };
      this.error = labels.length === 2 && labels[0] === "error" && labels[1] === "reference";
      return;
    }
    const values = cells.slice(1);
    if (this.error) throw new FluxQueryError(`InfluxDB failed the query: ${values[0] ?? "no reason given"}`);
    this.onRow(values, this.table);
  }
}

function quotesIn(line: string): number {
  let n = 0;
  for (let i = line.indexOf('"'); i >= 0; i = line.indexOf('"', i + 1)) n++;
  return n;
}

/** Splits a CSV line whose cells may be quoted ("" inside quotes is one quote). */
export function splitQuoted(line: string): string[] {
  const cells: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = "";
      let j = i + 1;
      for (;;) {
        const q = line.indexOf('"', j);
        if (q < 0) {
          value += line.slice(j);
          j = line.length;
          break;
        }
        value += line.slice(j, q);
        if (line[q + 1] === '"') {
          value += '"';
          j = q + 2;
          continue;
        }
        j = q + 1;
        break;
      }
      cells.push(value);
      if (j >= line.length) return cells;
      i = j + 1; // past the comma
      if (i > line.length) return cells;
      if (i === line.length) {
        cells.push("");
        return cells;
      }
      continue;
    }
    const comma = line.indexOf(",", i);
    if (comma < 0) {
      cells.push(line.slice(i));
      return cells;
    }
    cells.push(line.slice(i, comma));
    i = comma + 1;
    if (i === line.length) {
      cells.push("");
      return cells;
    }
  }
}
