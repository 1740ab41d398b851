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
  /** Each column's `#datatype` (double, long, string, dateTime:RFC3339, …; "" when none). */
  types: string[];
}

export class FluxQueryError extends Error {
  override name = "FluxQueryError";
}

export class AnnotatedCsv {
  private readonly decoder = new TextDecoder();
  private rest = "";
  private defaults: string[] = [];
  private types: string[] = [];
  private table: CsvTable | undefined;
  /** Per table, the cells wanted (indexes into its labels), ascending with their output slots. */
  private picks: { cell: number; slot: number }[] = [];
  private values: (string | undefined)[] = [];
  private error = false;

  /**
   * `pick` says, for each table, which of its columns each row should hold (indexes into its
   * labels, -1 for none): rows reach `onRow` as those cells only, in that order, in an array
   * that is reused for the next row.
   */
  constructor(
    private readonly pick: (table: CsvTable) => number[],
    private readonly onRow: (values: (string | undefined)[], table: CsvTable) => void,
  ) {}

  push(chunk: Uint8Array): void {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    let start = 0;
    let from = 0;
    let quote = text.indexOf('"');
    for (;;) {
      const nl = text.indexOf("\n", from);
      if (nl < 0) break;
      if (quote >= 0 && quote < start) quote = text.indexOf('"', start);
      // A newline inside quotes (a value holding one) does not end the line.
      const quoted = quote >= 0 && quote < nl;
      if (quoted && quotesIn(text, start, nl) % 2 === 1) {
        from = nl + 1;
        continue;
      }
      this.line(text, start, text.charCodeAt(nl - 1) === 13 && nl > start ? nl - 1 : nl, quoted);
      start = nl + 1;
      from = start;
    }
    this.rest = text.slice(start);
  }

  end(): void {
    const last = this.rest + this.decoder.decode();
    this.rest = "";
    if (last === "") return;
    const stop = last.endsWith("\r") ? last.length - 1 : last.length;
    this.line(last, 0, stop, last.indexOf('"') >= 0);
  }

  private line(text: string, start: number, stop: number, quoted: boolean): void {
    if (stop === start) {
      this.table = undefined;
      this.defaults = [];
      this.types = [];
      return;
    }
    if (this.table === undefined || quoted || this.error) {
      const cells = splitQuoted(text.slice(start, stop));
      this.cells(cells);
      return;
    }
    // An unquoted row: only the wanted cells are cut out of the text.
    // One array for every row (onRow must copy what it keeps); a cell equal to the same cell of the
    // row before (a series' tags, a window's time) is that string again, not a new one.
    const values = this.values;
    let cell = -1; // the leading annotation column
    let at = start;
    let p = 0;
    const picks = this.picks;
    while (p < picks.length && at <= stop) {
      let comma = text.indexOf(",", at);
      if (comma < 0 || comma > stop) comma = stop;
      while (p < picks.length && (picks[p] as { cell: number }).cell === cell) {
        const slot = (picks[p] as { slot: number }).slot;
        const before = values[slot];
        if (before === undefined || before.length !== comma - at || !text.startsWith(before, at)) {
          values[slot] = text.slice(at, comma);
        }
        p++;
      }
      cell++;
      at = comma + 1;
    }
    this.onRow(values, this.table);
  }

  private cells(cells: string[]): void {
    if (this.table === undefined) {
      const first = cells[0] ?? "";
      if (first.startsWith("#")) {
        if (first === "#default") this.defaults = cells.slice(1);
        else if (first === "#datatype") this.types = cells.slice(1);
        return;
      }
      const labels = cells.slice(1);
      const table = {
        labels,
        defaults: labels.map((_, i) => this.defaults[i] ?? ""),
        types: labels.map((_, i) => this.types[i] ?? ""),
      };
      this.table = table;
      this.error = labels.length === 2 && labels[0] === "error" && labels[1] === "reference";
      const wanted = this.pick(table);
      this.values = new Array(wanted.length);
      this.picks = wanted
        .map((cell, slot) => ({ cell, slot }))
        .filter((x) => x.cell >= 0)
        .sort((a, b) => a.cell - b.cell);
      return;
    }
    const row = cells.slice(1);
    if (this.error) throw new FluxQueryError(`InfluxDB failed the query: ${row[0] ?? "no reason given"}`);
    const values = this.values;
    values.fill(undefined);
    for (const { cell, slot } of this.picks) values[slot] = row[cell];
    this.onRow(values, this.table);
  }
}

function quotesIn(text: string, start: number, stop: number): number {
  let n = 0;
  for (let i = text.indexOf('"', start); i >= 0 && i < stop; i = text.indexOf('"', i + 1)) n++;
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

/**
 * A row as an object by column label, typed as its `#datatype` says (numbers for double, long and
 * unsignedLong, booleans, text for the rest); an empty cell takes the column's default, and is
 * null for a number or boolean without one.
 */
export function rowObject(values: readonly (string | undefined)[], table: CsvTable): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  const { labels, defaults, types } = table;
  for (let i = 0; i < labels.length; i++) {
    let text = values[i] ?? "";
    if (text === "") text = defaults[i] ?? "";
    const type = types[i];
    let value: unknown = text;
    if (type === "double" || type === "long" || type === "unsignedLong") {
      value = text === "" ? null : text === "+Inf" ? Infinity : text === "-Inf" ? -Infinity : Number(text);
    } else if (type === "boolean") value = text === "" ? null : text === "true";
    row[labels[i] as string] = value;
  }
  return row;
}
