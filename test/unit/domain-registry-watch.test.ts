// The pure parts of WatchRegistry: the deadline heap that finds agents gone silent without scanning
// them all, what counts as a change, and whom a change concerns.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeadlineHeap } from '../../src/domain/deadline-heap.js';
import { changeConcerns, changedFields, CHANGE_FIELDS, effectiveStatus, type AgentView } from '../../src/domain/registry-watch.js';

function drain(h: DeadlineHeap<string>, limit = Number.POSITIVE_INFINITY): string[] {
  const out: string[] = [];
  for (let k = h.popBefore(limit); k !== undefined; k = h.popBefore(limit)) out.push(k);
  return out;
}

describe('DeadlineHeap', () => {
  it('pops keys in deadline order, only those before the limit', () => {
    const h = new DeadlineHeap<string>();
    for (const [k, d] of [['c', 30], ['a', 10], ['d', 40], ['b', 20]] as const) h.set(k, d);
    assert.equal(h.peekDeadline(), 10);
    assert.deepEqual(drain(h, 30), ['a', 'b']);
    assert.equal(h.size, 2);
    assert.deepEqual(drain(h), ['c', 'd']);
    assert.equal(h.peekDeadline(), undefined);
  });

  it('moves a key in place (one entry per key, however often it moves) and deletes', () => {
    const h = new DeadlineHeap<string>();
    h.set('a', 10);
    h.set('b', 20);
    for (let i = 0; i < 1000; i++) h.set('a', 100 + i); // heard again and again
    assert.equal(h.size, 2);
    assert.equal(h.deadlineOf('a'), 1099);
    assert.equal(h.peekDeadline(), 20);
    h.set('a', 5);
    assert.equal(h.peekDeadline(), 5);
    assert.equal(h.delete('a'), true);
    assert.equal(h.delete('a'), false);
    assert.deepEqual(drain(h), ['b']);
  });

  it('matches a sorted model under random sets, moves and deletes', () => {
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const h = new DeadlineHeap<number>();
    const model = new Map<number, number>();
    for (let step = 0; step < 20_000; step++) {
      const k = rnd(500);
      const op = rnd(10);
      if (op < 7) {
        const d = rnd(1_000_000);
        h.set(k, d);
        model.set(k, d);
      } else if (op < 9) {
        assert.equal(h.delete(k), model.delete(k));
      } else {
        const limit = rnd(1_000_000);
        const popped: number[] = [];
        for (let x = h.popBefore(limit); x !== undefined; x = h.popBefore(limit)) popped.push(x);
        const want = [...model].filter(([, d]) => d < limit).sort((a, b) => a[1] - b[1]);
        assert.deepEqual(popped.map((x) => model.get(x)), want.map(([, d]) => d));
        for (const x of popped) model.delete(x);
      }
      assert.equal(h.size, model.size);
    }
  });
});

const view = (over: Partial<AgentView> = {}): AgentView => ({
  agentId: 'a',
  teamId: 't',
  reported: 'IDLE',
  effective: 'IDLE',
  lastSeenUs: 1,
  statusAtUs: 1,
  metaText: '{"x": 1}',
  lastErrorSummary: '',
  ...over,
});

describe('registry changes', () => {
  it('effective status: OFFLINE strictly after the threshold', () => {
    assert.equal(effectiveStatus('BUSY', 1_000, 1_000 + 90, 90), 'BUSY');
    assert.equal(effectiveStatus('BUSY', 1_000, 1_000 + 91, 90), 'OFFLINE');
  });

  it('a heartbeat alone (last_seen, status time) is no change; each watched field is', () => {
    assert.deepEqual(changedFields(view(), view({ lastSeenUs: 99, statusAtUs: 99 })), []);
    assert.deepEqual(changedFields(view(), view({ effective: 'OFFLINE' })), ['status']);
    assert.deepEqual(changedFields(view(), view({ reported: 'BUSY', effective: 'BUSY' })), ['status', 'reported_status']);
    assert.deepEqual(changedFields(view(), view({ teamId: 'u' })), ['team_id']);
    assert.deepEqual(changedFields(view(), view({ metaText: '{"x": 2}' })), ['meta']);
    assert.deepEqual(changedFields(view(), view({ lastErrorSummary: 'boom' })), ['last_error_summary']);
    assert.deepEqual(changedFields(undefined, view()), [...CHANGE_FIELDS]);
  });

  it('a change concerns a watcher when the agent matches before or after', () => {
    const offline = { teamIds: new Set<string>(), statuses: new Set(['OFFLINE']) };
    const teamT = { teamIds: new Set(['t']), statuses: new Set<string>() };
    const all = { teamIds: new Set<string>(), statuses: new Set<string>() };
    assert.equal(changeConcerns(offline, { teamId: 't', effective: 'IDLE' }, { teamId: 't', effective: 'OFFLINE' }), true);
    assert.equal(changeConcerns(offline, { teamId: 't', effective: 'OFFLINE' }, { teamId: 't', effective: 'IDLE' }), true, 'coming back is news to an OFFLINE watcher');
    assert.equal(changeConcerns(offline, { teamId: 't', effective: 'IDLE' }, { teamId: 't', effective: 'BUSY' }), false);
    assert.equal(changeConcerns(teamT, { teamId: 't', effective: 'IDLE' }, { teamId: 'u', effective: 'IDLE' }), true, 'leaving the team');
    assert.equal(changeConcerns(teamT, null, { teamId: 'u', effective: 'IDLE' }), false);
    assert.equal(changeConcerns(all, null, { teamId: 'u', effective: 'IDLE' }), true);
  });
});
