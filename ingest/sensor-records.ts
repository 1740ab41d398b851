/**
 * The changelog's record format: one record per sensor holding its detectors, alert states and
 * clock, a record per window, and the partition's meta record.
 *
 * The task tracks its state as entries (one per detector, alert state, window and clock; see
 * PartitionTask.takeChangelog). Written as they are, a sensor's readings change about ten of them,
 * and at 10,000 readings/s kafkajs spent more main-thread time encoding those records than the
 * worker spent on anything but processing. Here the detector, alert and clock entries a commit
 * changed are grouped by sensor, and each changed sensor becomes one record `p<SEP><sensor id>`:
 * `{"d": {field: detector}, "a": {rule id: alert state}, "t": clock}`, all of the sensor's current
 * ones. Compaction keeps each sensor's latest record; a sensor with none left is a tombstone.
 * Windows stay a record each (see sensorOfEntry).
 *
 * Restore reads both this format and the older one (one record per entry). A sensor's record
 * replaces everything restored of that sensor before it; records of the older format that follow
 * it (the tombstones written below) are ignored. The older-format entries a restore applied are
 * tombstoned with the next records, so compaction removes them.
 */
export interface ChangelogEntry {
  key: string;
  value: string | null;
}

import { SENSOR_KEY, SEP } from "./windows.js";

export const SENSOR_RECORD = `p${SEP}`;
/** Entry key prefixes of the packed kinds: alert states and detectors (the clock is SENSOR_KEY). */
export const ALERT_KEY = `a${SEP}`;
export const DETECTOR_KEY = `d${SEP}`;

/**
 * The sensor a packed entry belongs to: detectors (`d<SEP>sensor<SEP>field`), alert states
 * (`a<SEP>rule<SEP>sensor`) and the clock (`t<SEP>sensor`). Undefined for entries that stay records
 * of their own: windows (a sensor keeps several closed ones for revisions; packing them would write
 * them all again on every change) and the partition's meta.
 */
export function sensorOfEntry(key: string): string | undefined {
  const kind = key.slice(0, 2);
  if (kind === ALERT_KEY) {
    const rule = key.indexOf(SEP, 2);
    return rule < 0 ? undefined : key.slice(rule + 1);
  }
  if (kind === DETECTOR_KEY) {
    const end = key.indexOf(SEP, 2);
    return end < 0 ? undefined : key.slice(2, end);
  }
  if (kind === SENSOR_KEY) return key.slice(2);
  return undefined;
}

/** A sensor's record: its detectors by field, its alert states by rule, its clock. */
interface Packed {
  d?: Record<string, unknown>;
  a?: Record<string, unknown>;
  t?: unknown;
}

/** The record's value for a sensor's entries (key and JSON value each), or null when there are none. */
function packValue(sensor: string, entries: [string, string][]): string | null {
  let d = "";
  let a = "";
  let t = "";
  for (const [key, value] of entries) {
    if (key.startsWith(DETECTOR_KEY))
      d += `${d === "" ? "" : ","}${JSON.stringify(key.slice(sensor.length + 3))}:${value}`;
    else if (key.startsWith(ALERT_KEY))
      a += `${a === "" ? "" : ","}${JSON.stringify(key.slice(2, key.length - sensor.length - 1))}:${value}`;
    else t = value;
  }
  const parts: string[] = [];
  if (d !== "") parts.push(`"d":{${d}}`);
  if (a !== "") parts.push(`"a":{${a}}`);
  if (t !== "") parts.push(`"t":${t}`);
  return parts.length === 0 ? null : `{${parts.join(",")}}`;
}

/** The entries of a sensor's record, by entry key. */
function unpackValue(sensor: string, value: string): Map<string, string> {
  const packed = JSON.parse(value) as Packed;
  const out = new Map<string, string>();
  for (const [field, state] of Object.entries(packed.d ?? {}))
    out.set(`${DETECTOR_KEY}${sensor}${SEP}${field}`, JSON.stringify(state));
  for (const [rule, state] of Object.entries(packed.a ?? {}))
    out.set(`${ALERT_KEY}${rule}${SEP}${sensor}`, JSON.stringify(state));
  if (packed.t !== undefined) out.set(`${SENSOR_KEY}${sensor}`, JSON.stringify(packed.t));
  return out;
}

export class SensorRecords {
  /** The entry keys each sensor has in the state now. */
  private readonly live = new Map<string, Set<string>>();
  /** While restoring: sensors whose record was applied, so later older-format records are ignored. */
  private restoredSensors: Set<string> | undefined;
  /** Older-format records applied by a restore, by key: tombstoned with the next commit. */
  private readonly legacy = new Set<string>();

  /**
   * The records of a commit. `changed` is what the task's state entries became since the last
   * commit (null: gone); `current` gives an unchanged entry's value (null if it is gone).
   */
  pack(changed: ChangelogEntry[], current: (key: string) => string | null): ChangelogEntry[] {
    this.restoredSensors = undefined;
    const out: ChangelogEntry[] = [];
    const bySensor = new Map<string, Map<string, string | null>>();
    for (const key of this.legacy) {
      out.push({ key, value: null });
      const sensor = sensorOfEntry(key) as string;
      if (!bySensor.has(sensor)) bySensor.set(sensor, new Map());
    }
    this.legacy.clear();
    for (const entry of changed) {
      const sensor = sensorOfEntry(entry.key);
      if (sensor === undefined) {
        out.push(entry);
        continue;
      }
      let mine = bySensor.get(sensor);
      if (mine === undefined) {
        mine = new Map();
        bySensor.set(sensor, mine);
      }
      mine.set(entry.key, entry.value);
    }
    for (const [sensor, mine] of bySensor) {
      let keys = this.live.get(sensor);
      if (keys === undefined) {
        keys = new Set();
        this.live.set(sensor, keys);
      }
      for (const [key, value] of mine) {
        if (value === null) keys.delete(key);
        else keys.add(key);
      }
      const entries: [string, string][] = [];
      for (const key of keys) {
        const value = mine.has(key) ? (mine.get(key) as string) : current(key);
        if (value === null) keys.delete(key);
        else entries.push([key, value]);
      }
      if (keys.size === 0) this.live.delete(sensor);
      out.push({ key: SENSOR_RECORD + sensor, value: packValue(sensor, entries) });
    }
    return out;
  }

  /** One changelog record read while restoring (in log order), as the entries the task applies. */
  unpack(key: string, value: string | null): ChangelogEntry[] {
    this.restoredSensors ??= new Set();
    if (key.startsWith(SENSOR_RECORD)) {
      const sensor = key.slice(SENSOR_RECORD.length);
      this.restoredSensors.add(sensor);
      const entries = value === null ? new Map<string, string>() : unpackValue(sensor, value);
      const keys = new Set(entries.keys());
      const out: ChangelogEntry[] = [];
      // Older-format entries restored before it stay in `legacy`: their records are still in the
      // log and are tombstoned all the same (ignored by later restores, which read this record).
      for (const old of this.live.get(sensor) ?? []) if (!keys.has(old)) out.push({ key: old, value: null });
      for (const [k, v] of entries) out.push({ key: k, value: v });
      if (keys.size === 0) this.live.delete(sensor);
      else this.live.set(sensor, keys);
      return out;
    }
    const sensor = sensorOfEntry(key);
    if (sensor === undefined) return [{ key, value }];
    if (this.restoredSensors.has(sensor)) return [];
    // The older format: one record per entry.
    let keys = this.live.get(sensor);
    if (value === null) {
      keys?.delete(key);
      if (keys?.size === 0) this.live.delete(sensor);
      this.legacy.delete(key);
    } else {
      if (keys === undefined) {
        keys = new Set();
        this.live.set(sensor, keys);
      }
      keys.add(key);
      this.legacy.add(key);
    }
    return [{ key, value }];
  }
}
