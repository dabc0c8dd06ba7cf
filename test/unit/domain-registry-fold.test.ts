// DESIGN 3.3, rule by rule: foldRegistry over stored states and batches of events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { foldRegistry, summarizeError } from '../../src/domain/registry-fold.js';
import type { AgentState, RegistryEvent } from '../../src/domain/types.js';

const T0 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in µs

function ev(over: Partial<RegistryEvent> & { timeUs: number }): RegistryEvent {
  return {
    agentId: 'a1',
    eventTeam: '',
    subjectTeam: '',
    streamSeq: 1,
    serverTimeUs: over.timeUs,
    status: null,
    meta: null,
    errorMessage: null,
    ...over,
  };
}

/** A stored row whose status, team and error summary all came from its newest applied event (as 003 backfills). */
function stored(over: Partial<AgentState> = {}): AgentState {
  const at = over.statusAtUs ?? T0 + 10_000_000;
  const seq = over.statusSeq ?? 10;
  const hasError = (over.lastErrorSummary ?? null) !== null;
  return {
    agentId: 'a1',
    teamId: 'ops',
    status: 'BUSY',
    lastSeenUs: T0 + 10_000_000,
    statusAtUs: at,
    statusSeq: seq,
    meta: { location: 'rack-1' },
    metaAt: {},
    lastErrorSummary: null,
    statusSetAtUs: at,
    statusSetSeq: seq,
    teamAtUs: at,
    teamSeq: seq,
    lastErrorAtUs: hasError ? at : 0,
    lastErrorSeq: hasError ? seq : 0,
    ...over,
  };
}

function one(st: ReadonlyMap<string, AgentState>, events: RegistryEvent[]): AgentState {
  const out = foldRegistry(st, events);
  assert.equal(out.length, 1);
  return out[0]!;
}

const none = new Map<string, AgentState>();

describe('foldRegistry: new agents', () => {
  it('a new agent starts IDLE with event time, server time and empty meta', () => {
    const s = one(none, [ev({ timeUs: T0, streamSeq: 5, serverTimeUs: T0 + 7 })]);
    assert.deepEqual(s, {
      agentId: 'a1',
      teamId: 'default',
      status: 'IDLE',
      lastSeenUs: T0 + 7,
      statusAtUs: T0,
      statusSeq: 5,
      meta: {},
      metaAt: {},
      lastErrorSummary: null,
      statusSetAtUs: 0,
      statusSetSeq: 0,
      teamAtUs: 0,
      teamSeq: 0,
      lastErrorAtUs: 0,
      lastErrorSeq: 0,
    });
  });
  it('a new agent whose first event implies a status takes it', () => {
    assert.equal(one(none, [ev({ timeUs: T0, status: 'BUSY' })]).status, 'BUSY');
  });
  it('never registers "unknown" or an empty id', () => {
    assert.deepEqual(foldRegistry(none, [ev({ timeUs: T0, agentId: 'unknown' }), ev({ timeUs: T0, agentId: '' })]), []);
  });
  it('returns every touched agent once, sorted by id', () => {
    const out = foldRegistry(none, [
      ev({ agentId: 'zeta', timeUs: T0 }),
      ev({ agentId: 'alpha', timeUs: T0 }),
      ev({ agentId: 'zeta', timeUs: T0 + 1 }),
    ]);
    assert.deepEqual(
      out.map((s) => s.agentId),
      ['alpha', 'zeta'],
    );
  });
});

describe('foldRegistry: team', () => {
  it('the event team wins over the stored one', () => {
    assert.equal(one(new Map([['a1', stored()]]), [ev({ timeUs: T0 + 20_000_000, eventTeam: 'dev' })]).teamId, 'dev');
  });
  it('else the stored team, even when the subject names another', () => {
    const s = one(new Map([['a1', stored()]]), [ev({ timeUs: T0 + 20_000_000, subjectTeam: 'dev' })]);
    assert.equal(s.teamId, 'ops');
  });
  it('else the subject team', () => {
    assert.equal(one(none, [ev({ timeUs: T0, subjectTeam: 'dev' })]).teamId, 'dev');
  });
  it('else "default"', () => {
    assert.equal(one(none, [ev({ timeUs: T0 })]).teamId, 'default');
  });
  it('a stored empty team is filled from the subject', () => {
    const s = one(new Map([['a1', stored({ teamId: '' })]]), [ev({ timeUs: T0 + 20_000_000, subjectTeam: 'dev' })]);
    assert.equal(s.teamId, 'dev');
  });
});

describe('foldRegistry: status rules', () => {
  const later = T0 + 20_000_000;
  for (const status of ['IDLE', 'BUSY', 'OFFLINE', 'ERROR'] as const) {
    it(`an implied ${status} sets it`, () => {
      assert.equal(one(new Map([['a1', stored({ status: 'IDLE' })]]), [ev({ timeUs: later, status })]).status, status);
    });
  }
  it('an event implying nothing leaves BUSY and ERROR unchanged', () => {
    assert.equal(one(new Map([['a1', stored({ status: 'BUSY' })]]), [ev({ timeUs: later })]).status, 'BUSY');
    assert.equal(one(new Map([['a1', stored({ status: 'ERROR' })]]), [ev({ timeUs: later })]).status, 'ERROR');
  });
  it('an OFFLINE agent that speaks again becomes IDLE', () => {
    assert.equal(one(new Map([['a1', stored({ status: 'OFFLINE' })]]), [ev({ timeUs: later })]).status, 'IDLE');
  });
  it('an OFFLINE agent whose new event implies BUSY becomes BUSY', () => {
    const s = one(new Map([['a1', stored({ status: 'OFFLINE' })]]), [ev({ timeUs: later, status: 'BUSY' })]);
    assert.equal(s.status, 'BUSY');
  });
  it('an older event after OFFLINE does not revive it', () => {
    const s = one(new Map([['a1', stored({ status: 'OFFLINE' })]]), [ev({ timeUs: T0 })]);
    assert.equal(s.status, 'OFFLINE');
  });
});

describe('foldRegistry: ordering', () => {
  it('a replay of an old heartbeat after a newer status changes nothing but liveness', () => {
    const st = stored({ status: 'ERROR', meta: { battery: 0.2 }, lastErrorSummary: 'boom', lastSeenUs: T0 + 10_000_000 });
    const replay = ev({
      timeUs: T0, // older than status_at
      streamSeq: 99, // a later stream position must not matter: time decides
      serverTimeUs: T0 + 30_000_000,
      status: 'IDLE',
      meta: { battery: 0.9 },
      errorMessage: 'older error',
      eventTeam: 'other',
    });
    const s = one(new Map([['a1', st]]), [replay]);
    assert.deepEqual(s, { ...st, lastSeenUs: T0 + 30_000_000 });
  });
  it('an old replay with an older server time changes nothing at all', () => {
    const st = stored();
    const s = one(new Map([['a1', st]]), [ev({ timeUs: T0, serverTimeUs: T0, status: 'IDLE' })]);
    assert.deepEqual(s, st);
  });
  it('the same event applied twice is idempotent', () => {
    const e = ev({ timeUs: T0, streamSeq: 3, status: 'BUSY', meta: { n: 1 }, errorMessage: 'x', eventTeam: 'ops' });
    const first = one(none, [e]);
    const again = one(new Map([['a1', first]]), [e]);
    assert.deepEqual(again, first);
    const twiceInBatch = one(none, [e, e]);
    assert.deepEqual(twiceInBatch, first);
  });
  it('ties on event time are broken by stream sequence, whatever the arrival order', () => {
    const a = ev({ timeUs: T0, streamSeq: 1, status: 'BUSY' });
    const b = ev({ timeUs: T0, streamSeq: 2, status: 'IDLE' });
    assert.equal(one(none, [a, b]).status, 'IDLE');
    assert.equal(one(none, [b, a]).status, 'IDLE');
    assert.equal(one(none, [b, a]).statusSeq, 2);
  });
  it('an equal time and lower sequence than stored is not newer', () => {
    const st = stored({ statusAtUs: T0, statusSeq: 10, status: 'BUSY' });
    assert.equal(one(new Map([['a1', st]]), [ev({ timeUs: T0, streamSeq: 9, status: 'IDLE' })]).status, 'BUSY');
    assert.equal(one(new Map([['a1', st]]), [ev({ timeUs: T0, streamSeq: 11, status: 'IDLE' })]).status, 'IDLE');
  });
  it('events out of order within a batch fold as if sorted by event time', () => {
    const events = [
      ev({ timeUs: T0 + 3, streamSeq: 1, status: 'ERROR', errorMessage: 'third' }),
      ev({ timeUs: T0 + 1, streamSeq: 3, status: 'BUSY', meta: { a: 1, b: 1 } }),
      ev({ timeUs: T0 + 2, streamSeq: 2, meta: { b: 2 }, errorMessage: 'second' }),
    ];
    const s = one(none, events);
    assert.equal(s.status, 'ERROR');
    assert.equal(s.statusAtUs, T0 + 3);
    assert.equal(s.statusSeq, 1);
    assert.deepEqual(s.meta, { a: 1, b: 2 });
    assert.equal(s.lastErrorSummary, 'third');
    assert.deepEqual(one(none, [...events].reverse()), s);
  });
  it('status_at records the newest applied event time', () => {
    const s = one(new Map([['a1', stored()]]), [ev({ timeUs: T0 + 50_000_000, streamSeq: 77 })]);
    assert.equal(s.statusAtUs, T0 + 50_000_000);
    assert.equal(s.statusSeq, 77);
  });
});

describe('foldRegistry: last_seen', () => {
  it('is the greatest server time, never the event time', () => {
    const s = one(none, [ev({ timeUs: T0 + 999_000_000, serverTimeUs: T0 + 5 })]);
    assert.equal(s.lastSeenUs, T0 + 5);
  });
  it('never moves back', () => {
    const st = stored({ lastSeenUs: T0 + 100 });
    const s = one(new Map([['a1', st]]), [ev({ timeUs: T0 + 20_000_000, serverTimeUs: T0 + 50 })]);
    assert.equal(s.lastSeenUs, T0 + 100);
    assert.equal(s.statusAtUs, T0 + 20_000_000);
  });
  it('takes the maximum over a batch in any order', () => {
    const s = one(none, [
      ev({ timeUs: T0 + 1, serverTimeUs: T0 + 300 }),
      ev({ timeUs: T0 + 2, serverTimeUs: T0 + 100 }),
    ]);
    assert.equal(s.lastSeenUs, T0 + 300);
  });
});

describe('foldRegistry: meta and error summary', () => {
  it('meta merges shallowly over the stored meta', () => {
    const st = stored({ meta: { location: 'rack-1', nested: { a: 1 }, keep: true } });
    const s = one(new Map([['a1', st]]), [ev({ timeUs: T0 + 20_000_000, meta: { location: 'rack-7', nested: { b: 2 } } })]);
    assert.deepEqual(s.meta, { location: 'rack-7', nested: { b: 2 }, keep: true });
    assert.deepEqual(st.meta, { location: 'rack-1', nested: { a: 1 }, keep: true }, 'stored state is not mutated');
  });
  it('an event without meta keeps the stored meta', () => {
    const st = stored();
    assert.deepEqual(one(new Map([['a1', st]]), [ev({ timeUs: T0 + 20_000_000 })]).meta, st.meta);
  });
  it('the latest error message wins, trimmed to 500 characters', () => {
    const long = 'e'.repeat(800);
    const s = one(none, [ev({ timeUs: T0, errorMessage: 'first' }), ev({ timeUs: T0 + 1, errorMessage: long })]);
    assert.equal(s.lastErrorSummary, 'e'.repeat(500));
  });
  it('an event without an error keeps the previous summary', () => {
    const st = stored({ lastErrorSummary: 'old' });
    assert.equal(one(new Map([['a1', st]]), [ev({ timeUs: T0 + 20_000_000, errorMessage: null })]).lastErrorSummary, 'old');
    assert.equal(one(new Map([['a1', st]]), [ev({ timeUs: T0 + 20_000_000, errorMessage: '  ' })]).lastErrorSummary, 'old');
  });
  it('the cut never splits a surrogate pair', () => {
    const msg = 'x'.repeat(499) + '😀' + 'tail';
    const out = summarizeError(msg);
    assert.equal(out, 'x'.repeat(499));
    assert.equal(summarizeError('  padded  '), 'padded');
  });
});

// Issue 7 scenario 1: after a crash, JetStream redelivers the killed process's unacked messages only
// after ACK_WAIT, so newer events of an agent are often applied before older ones, and in other
// batches. The registry must still equal a clean, in-order run of the same events, meta included.
describe('foldRegistry: order independence (same events, any order, any batches)', () => {
  /** The clean run: every event in (time, seq) order, one batch per event, stored state in between. */
  function clean(events: readonly RegistryEvent[]): AgentState[] {
    const sorted = [...events].sort((a, b) => a.timeUs - b.timeUs || a.streamSeq - b.streamSeq);
    let st = new Map<string, AgentState>();
    for (const e of sorted) st = upsert(st, foldRegistry(st, [e]));
    return [...st.values()].sort((a, b) => (a.agentId < b.agentId ? -1 : 1));
  }
  /** Events delivered in `order`, cut into batches at `cuts`, each batch folded over the stored rows. */
  function delivered(events: readonly RegistryEvent[], cuts: readonly number[]): AgentState[] {
    let st = new Map<string, AgentState>();
    let from = 0;
    for (const to of [...cuts, events.length]) {
      st = upsert(st, foldRegistry(st, events.slice(from, to)));
      from = to;
    }
    return [...st.values()].sort((a, b) => (a.agentId < b.agentId ? -1 : 1));
  }
  function upsert(st: Map<string, AgentState>, out: AgentState[]): Map<string, AgentState> {
    const next = new Map(st);
    for (const s of out) next.set(s.agentId, s);
    return next;
  }
  it('an older heartbeat redelivered after a newer one keeps the keys no newer event set', () => {
    const t0 = ev({ timeUs: T0 + 1, streamSeq: 1, meta: { a: 0 } });
    const t1 = ev({ timeUs: T0 + 2, streamSeq: 2, meta: { a: 1, battery: 0.126 } });
    const t2 = ev({ timeUs: T0 + 3, streamSeq: 3, meta: { b: 2, battery: 0.125 } });
    const expected = clean([t0, t1, t2]);
    assert.deepEqual(expected[0]!.meta, { a: 1, b: 2, battery: 0.125 });
    assert.deepEqual(delivered([t0, t2, t1], [2]), expected);
    assert.deepEqual(delivered([t2, t1, t0], [1, 2]), expected);
    assert.deepEqual(delivered([t2, t0, t1], []), expected);
  });
  it('a meta key stored before 007 (no time) counts as the newest applied event: older events do not replace it', () => {
    const st = stored({ meta: { battery: 0.5 }, metaAt: {} });
    const older = ev({ timeUs: T0, streamSeq: 1, meta: { battery: 0.1, fresh: true } });
    const s = one(new Map([['a1', st]]), [older]);
    assert.deepEqual(s.meta, { battery: 0.5, fresh: true });
    const newer = ev({ timeUs: T0 + 20_000_000, streamSeq: 11, meta: { battery: 0.9 } });
    assert.deepEqual(one(new Map([['a1', st]]), [newer]).meta, { battery: 0.9 });
  });
  it('a sender\'s "__proto__" key is stored as a plain key, never as the prototype', () => {
    const meta = JSON.parse('{"__proto__": {"polluted": true}, "ok": 1}') as Record<string, unknown>;
    const s = one(none, [ev({ timeUs: T0, meta })]);
    assert.equal(Object.getPrototypeOf(s.meta), Object.prototype);
    assert.equal(JSON.stringify(s.meta), '{"__proto__":{"polluted":true},"ok":1}');
    assert.equal((s.meta as { polluted?: unknown }).polluted, undefined);
  });

  it('an older error redelivered after a newer event in a later batch is still the latest error', () => {
    const older = ev({ timeUs: T0 + 1, streamSeq: 1, status: 'ERROR', errorMessage: 'disk full' });
    const newer = ev({ timeUs: T0 + 2, streamSeq: 2, status: 'IDLE' });
    const expected = clean([older, newer]);
    assert.equal(expected[0]!.lastErrorSummary, 'disk full');
    assert.deepEqual(delivered([newer, older], [1]), expected);
    assert.deepEqual(delivered([newer, older], []), expected);
  });
  it('an older error redelivered after a newer error does not replace it', () => {
    const older = ev({ timeUs: T0 + 1, streamSeq: 1, errorMessage: 'first' });
    const newer = ev({ timeUs: T0 + 2, streamSeq: 2, errorMessage: 'second' });
    assert.equal(delivered([newer, older], [1])[0]!.lastErrorSummary, 'second');
    assert.deepEqual(delivered([newer, older], [1]), clean([older, newer]));
  });
  it('an older status redelivered after a newer event that implies none still sets the status', () => {
    const older = ev({ timeUs: T0 + 1, streamSeq: 1, status: 'BUSY' });
    const newer = ev({ timeUs: T0 + 2, streamSeq: 2 });
    const expected = clean([older, newer]);
    assert.equal(expected[0]!.status, 'BUSY');
    assert.deepEqual(delivered([newer, older], [1]), expected);
  });
  it('an older OFFLINE redelivered after a newer event that implies none leaves the agent IDLE', () => {
    const first = ev({ timeUs: T0 + 1, streamSeq: 1, status: 'BUSY' });
    const offline = ev({ timeUs: T0 + 2, streamSeq: 2, status: 'OFFLINE' });
    const speaks = ev({ timeUs: T0 + 3, streamSeq: 3 });
    const expected = clean([first, offline, speaks]);
    assert.equal(expected[0]!.status, 'IDLE');
    assert.deepEqual(delivered([first, speaks, offline], [2]), expected);
    assert.deepEqual(delivered([speaks, first, offline], [1, 2]), expected);
  });
  it("an older event's own team redelivered after a newer event without one is still the team", () => {
    const older = ev({ timeUs: T0 + 1, streamSeq: 1, eventTeam: 'ops' });
    const newer = ev({ timeUs: T0 + 2, streamSeq: 2 });
    const later = ev({ timeUs: T0 + 3, streamSeq: 3, eventTeam: 'dev' });
    assert.equal(clean([older, newer])[0]!.teamId, 'ops');
    assert.deepEqual(delivered([newer, older], [1]), clean([older, newer]));
    assert.equal(clean([older, newer, later])[0]!.teamId, 'dev');
    assert.deepEqual(delivered([later, newer, older], [1, 2]), clean([older, newer, later]));
  });

  it('random events in random orders and batch cuts fold to the clean run (meta included)', () => {
    let seed = 0x2f6b3a1d;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
      return seed % n;
    };
    const statuses = [null, null, null, 'IDLE', 'BUSY', 'OFFLINE', 'ERROR'] as const;
    for (let round = 0; round < 400; round++) {
      const events: RegistryEvent[] = [];
      const count = 1 + rnd(12);
      for (let i = 0; i < count; i++) {
        const agentId = ['a1', 'a2', 'a3'][rnd(3)]!;
        events.push(
          ev({
            agentId,
            // Few distinct times, so ties broken by stream sequence are common.
            timeUs: T0 + rnd(5) * 1_000_000,
            streamSeq: i + 1,
            serverTimeUs: T0 + rnd(1000),
            status: statuses[rnd(statuses.length)]!,
            eventTeam: ['', '', 'ops', 'dev'][rnd(4)]!,
            // One subject team per agent: the fallback team is then the same whichever event comes first.
            subjectTeam: agentId === 'a3' ? '' : `subj-${agentId}`,
            errorMessage: [null, null, '  ', `err-${i}`][rnd(4)]!,
            // Heartbeat data over a few shared keys, so newer events overwrite some keys and not others.
            meta: [null, null, { battery: i }, { battery: i, [`k${rnd(3)}`]: i }, { [`k${rnd(3)}`]: `v${i}` }][rnd(5)]!,
          }),
        );
      }
      const expected = clean(events);
      for (let trial = 0; trial < 5; trial++) {
        const shuffled = [...events];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = rnd(i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const cuts = [...new Set(Array.from({ length: rnd(4) }, () => rnd(shuffled.length + 1)))].sort((a, b) => a - b);
        const got = delivered(shuffled, cuts);
        assert.deepEqual(got, expected, `round ${round}: order ${shuffled.map((e) => e.streamSeq).join(',')} cuts ${cuts.join(',')}`);
      }
    }
  });
});
