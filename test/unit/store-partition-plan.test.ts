// The pure parts of log partitioning: which ranges to create (aligned to the interval, gaps around
// existing partitions filled, nothing behind the retention cutoff), their names, what retention does
// with each partition, the UUIDv7 time prefix the writer compares with a row's timestamp, and the
// LOG_PARTITION_INTERVAL / RETENTION_INTERVAL settings.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import { uuidV7 } from '../../src/domain/identity.js';
import { uuidV7Ms } from '../../src/store/batch-writer.js';
import {
  DAY_MS,
  HOUR_MS,
  partitionName,
  partitionSpecFor,
  rangesToCreate,
  retentionAction,
  uncovered,
  type LogPartition,
} from '../../src/store/partitions.js';

const T = Date.UTC(2026, 11, 5, 13, 37); // 2026-12-05T13:37Z
const day = (d: number): number => Date.UTC(2026, 11, d);
const part = (name: string, fromMs: number | null, toMs: number | null, isDefault = false): LogPartition => ({ name, fromMs, toMs, isDefault });

describe('log partitions: what to create', () => {
  it('daily partitions from STREAM_MAX_AGE back to three days ahead, aligned to midnight UTC', () => {
    const r = rangesToCreate(T, partitionSpecFor(DAY_MS, 7 * DAY_MS), [], null);
    assert.deepEqual(r, Array.from({ length: 11 }, (_, i) => ({ fromMs: day(5 - 7 + i), toMs: day(6 - 7 + i) })));
  });

  it('hourly partitions: three hours ahead, back as far as the stream keeps', () => {
    const r = rangesToCreate(T, partitionSpecFor(HOUR_MS, 6 * HOUR_MS), [], null);
    assert.equal(r[0]!.fromMs, Date.UTC(2026, 11, 5, 7));
    assert.equal(r.at(-1)!.toMs, Date.UTC(2026, 11, 5, 17));
    assert.ok(r.every((x) => x.toMs - x.fromMs === HOUR_MS));
  });

  it('nothing that exists, only the gaps around it (the legacy partition, another interval before)', () => {
    const existing = [
      part('log_entries_legacy', null, day(5) + 6 * HOUR_MS), // an upgrade made at 05:xx: up to... 06:00
      part('log_entries_p20261207', day(7), day(8)),
      part('log_entries_default', null, null, true),
    ];
    const r = rangesToCreate(T, partitionSpecFor(DAY_MS, 7 * DAY_MS), existing, null);
    assert.deepEqual(r, [
      { fromMs: day(5) + 6 * HOUR_MS, toMs: day(6) },
      { fromMs: day(6), toMs: day(7) },
      { fromMs: day(8), toMs: day(9) },
    ]);
    assert.deepEqual(uncovered({ fromMs: day(7), toMs: day(8) }, existing), []);
    assert.deepEqual(uncovered({ fromMs: day(6), toMs: day(9) }, existing), [{ fromMs: day(6), toMs: day(7) }, { fromMs: day(8), toMs: day(9) }]);
  });

  it('never a partition wholly behind the retention cutoff', () => {
    const r = rangesToCreate(T, partitionSpecFor(DAY_MS, 7 * DAY_MS), [], T - 3 * DAY_MS);
    assert.equal(r[0]!.fromMs, day(2)); // [Dec 2, Dec 3) still holds rows younger than the cutoff (Dec 2 13:37)
  });

  it('names: the start day, and the hour when it is not midnight', () => {
    assert.equal(partitionName(day(5)), 'log_entries_p20261205');
    assert.equal(partitionName(day(5) + 6 * HOUR_MS), 'log_entries_p20261205_0600');
  });
});

describe('log partitions: retention', () => {
  const cutoff = T - 3 * DAY_MS;
  it('drops a partition only when all of it is older than the cutoff', () => {
    assert.equal(retentionAction(part('a', day(1), day(2)), cutoff), 'drop');
    assert.equal(retentionAction(part('b', day(2), day(3)), cutoff), 'keep'); // straddles: kept whole until it expires whole
    assert.equal(retentionAction(part('c', day(5), day(6)), cutoff), 'keep');
  });
  it('trims row by row only the default partition and the legacy one (unbounded below) until it expires whole', () => {
    assert.equal(retentionAction(part('log_entries_default', null, null, true), cutoff), 'trim');
    assert.equal(retentionAction(part('log_entries_legacy', null, day(6)), cutoff), 'trim');
    assert.equal(retentionAction(part('log_entries_legacy', null, day(2)), cutoff), 'drop');
  });
});

describe('UUIDv7 time prefix', () => {
  it('is the millisecond the id was derived from; other versions have none', () => {
    const ms = Date.UTC(2026, 11, 5, 13, 37, 12, 345);
    assert.equal(uuidV7Ms(uuidV7(ms, 'ab'.repeat(16))), ms);
    assert.equal(uuidV7Ms('0d8f9c1e-1b6a-4c4f-9f1d-2a3b4c5d6e7f'), -1);
  });
});

describe('config: LOG_PARTITION_INTERVAL, RETENTION_INTERVAL', () => {
  it('defaults to a day and a minute; accepts hours dividing a day and whole days', () => {
    const c = loadConfig({});
    assert.equal(c.logPartitionIntervalMs, DAY_MS);
    assert.equal(c.retentionIntervalMs, 60_000);
    for (const v of ['1h', '6h', '12h', '1d', '7d', '1w']) assert.ok(loadConfig({ LOG_PARTITION_INTERVAL: v }).logPartitionIntervalMs > 0, v);
  });
  it('rejects what cannot be aligned to days, naming the variable', () => {
    for (const v of ['30m', '5h', '36h', '1h30m', 'daily']) {
      assert.throws(() => loadConfig({ LOG_PARTITION_INTERVAL: v }), /LOG_PARTITION_INTERVAL/, v);
    }
    assert.throws(() => loadConfig({ RETENTION_INTERVAL: '10ms' }), /RETENTION_INTERVAL/);
  });
});
