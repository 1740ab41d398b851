import { describe, expect, it } from "vitest";
import { AnnotatedCsv, FluxQueryError, rowObject, splitQuoted } from "../../api/flux-csv.js";

const ANSWER = [
  "#datatype,string,long,dateTime:RFC3339,double,string",
  "#group,false,false,false,false,true",
  "#default,0,,,,",
  ",result,table,_time,_value,sensor_id",
  ",,0,2026-12-01T00:00:00Z,1.5,plain",
  ',,0,2026-12-01T00:01:00Z,2,"with,comma"',
  ',,1,2026-12-01T00:02:00Z,3,"quote "" and\nnewline"',
  "",
  "#datatype,string,long,dateTime:RFC3339,double,string",
  "#group,false,false,false,false,true",
  "#default,1,,,,",
  ",result,table,_time,_value,sensor_id",
  ",,2,2026-12-01T00:03:00Z,4,é/ü",
  ",other,3,2026-12-01T00:04:00Z,5,",
  "",
].join("\r\n");

function parse(chunks: Uint8Array[]): { result: string; values: string[] }[] {
  const rows: { result: string; values: string[] }[] = [];
  const csv = new AnnotatedCsv(
    (table) => ["result", "_time", "_value", "sensor_id", "missing"].map((c) => table.labels.indexOf(c)),
    (values, table) => {
      const [result, ...rest] = [...values];
      expect(rest.pop()).toBeUndefined();
      rows.push({
        result: result || (table.defaults[table.labels.indexOf("result")] ?? ""),
        values: rest as string[],
      });
    },
  );
  for (const c of chunks) csv.push(c);
  csv.end();
  return rows;
}

const EXPECTED = [
  { result: "0", values: ["2026-12-01T00:00:00Z", "1.5", "plain"] },
  { result: "0", values: ["2026-12-01T00:01:00Z", "2", "with,comma"] },
  { result: "0", values: ["2026-12-01T00:02:00Z", "3", 'quote " and\nnewline'] },
  { result: "1", values: ["2026-12-01T00:03:00Z", "4", "é/ü"] },
  { result: "other", values: ["2026-12-01T00:04:00Z", "5", ""] },
];

describe("InfluxDB's annotated CSV", () => {
  it("reads tables, defaults, quoted cells and multi-byte text in one chunk", () => {
    expect(parse([new TextEncoder().encode(ANSWER)])).toEqual(EXPECTED);
  });

  it("gives the same rows however the bytes are cut into chunks", () => {
    const bytes = new TextEncoder().encode(ANSWER);
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(parse([bytes.slice(0, cut), bytes.slice(cut)])).toEqual(EXPECTED);
    }
    expect(parse([...bytes].map((b) => Uint8Array.of(b)))).toEqual(EXPECTED);
  });

  it("types whole rows by each table's #datatype, empty cells taking the column default", () => {
    const rows: Record<string, unknown>[] = [];
    const csv = new AnnotatedCsv(
      (table) => table.labels.map((_, i) => i),
      (values, table) => rows.push(rowObject(values, table)),
    );
    csv.push(
      new TextEncoder().encode(
        [
          "#datatype,string,long,dateTime:RFC3339,double,boolean,string,double",
          "#group,false,false,false,false,false,true,false",
          "#default,_result,,,,,,",
          ",result,table,_time,_value,ok,sensor_id,gap",
          ",,0,2026-12-01T00:00:00Z,1.5,true,a,",
          ",,0,2026-12-01T00:01:00Z,+Inf,false,a,-Inf",
          "",
        ].join("\r\n"),
      ),
    );
    csv.end();
    expect(rows).toEqual([
      {
        result: "_result",
        table: 0,
        _time: "2026-12-01T00:00:00Z",
        _value: 1.5,
        ok: true,
        sensor_id: "a",
        gap: null,
      },
      {
        result: "_result",
        table: 0,
        _time: "2026-12-01T00:01:00Z",
        _value: Number.POSITIVE_INFINITY,
        ok: false,
        sensor_id: "a",
        gap: Number.NEGATIVE_INFINITY,
      },
    ]);
  });

  it("throws the error InfluxDB reports after its answer began", () => {
    const failed = [
      "#datatype,string,string",
      "#group,true,true",
      "#default,,",
      ",error,reference",
      ',"panic: runtime error, out of memory",',
      "",
    ].join("\r\n");
    expect(() => parse([new TextEncoder().encode(failed)])).toThrow(FluxQueryError);
    expect(() => parse([new TextEncoder().encode(failed)])).toThrow(/panic: runtime error, out of memory/);
  });

  it("splits quoted cells, empty cells and a trailing empty cell", () => {
    expect(splitQuoted('a,"b,c",,"d""e"')).toEqual(["a", "b,c", "", 'd"e']);
    expect(splitQuoted('"x",')).toEqual(["x", ""]);
    expect(splitQuoted('"",y')).toEqual(["", "y"]);
    expect(splitQuoted('a,""')).toEqual(["a", ""]);
  });
});
