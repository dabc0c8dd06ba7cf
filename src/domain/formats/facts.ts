// What a decoded message means for its row and the registry, whatever its format: each format's reader
// (swarm-v1.ts for protobuf and proto3 JSON, swarm-json.ts for the current swarm's JSON envelopes,
// other JSON and text) produces Facts; ../normalize.ts turns them into a LogRow and a RegistryEvent by
// one set of rules (DESIGN 3.1 source/team/time, 3.2 ids, 3.3 registry).

import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import type { Level, ReportedStatus } from '../types.js';

/** Which reader a message was read by (the `format` label of mycelis_memory_ingest_messages_total). */
export const FORMATS = ['protobuf', 'proto_json', 'signal', 'telemetry', 'mission_event', 'json', 'text', 'none'] as const;
export type Format = (typeof FORMATS)[number];

/** What the row and the registry event need from a decoded message (strings not yet sanitized). */
export interface Facts {
  intent: string;
  message: string;
  level: Level;
  /** The source as sent ('' when the message names none: then the subject's agent, else "unknown"). */
  sourceAsSent: string;
  team: string;
  traceId: string;
  timestamp: Timestamp | undefined;
  /** MsgEnvelope.id ('' when none). */
  envelopeId: string;
  /** A mission event's mission_event_id ('' otherwise): its identity (DESIGN 3.2, see identity.ts). */
  missionEventId: string;
  /**
   * The agent this message tells the registry about: undefined = the row's source (swarm/v1 messages);
   * '' = none (generic rows, a signal without meta.agent_id); else that agent.
   */
  registryAgent?: string;
  /** Status implied by the message itself (before the level rule). */
  status: ReportedStatus | null;
  meta: Record<string, unknown> | null;
  /** An explicit error message field (tool_result / LogEntry error_message), if set. */
  errorText: string | null;
  /** An error text found in event data (error_message, error, last_error), used when the event is an error. */
  dataError: string | null;
}

export function baseFacts(over: Partial<Facts>): Facts {
  return {
    intent: '',
    message: '',
    level: 'INFO',
    sourceAsSent: '',
    team: '',
    traceId: '',
    timestamp: undefined,
    envelopeId: '',
    missionEventId: '',
    status: null,
    meta: null,
    errorText: null,
    dataError: null,
    ...over,
  };
}

const LEVEL_NAMES: ReadonlyMap<string, Level> = new Map<string, Level>([
  ['DEBUG', 'DEBUG'],
  ['INFO', 'INFO'],
  ['WARN', 'WARN'],
  ['WARNING', 'WARN'],
  ['ERROR', 'ERROR'],
  ['FATAL', 'FATAL'],
  ['CRITICAL', 'FATAL'],
]);

/** DEBUG/INFO/WARN/ERROR/FATAL, case-insensitive, WARNING -> WARN, CRITICAL -> FATAL; else null. */
export function normalizeLevel(value: unknown): Level | null {
  if (typeof value !== 'string') return null;
  return LEVEL_NAMES.get(value.trim().toUpperCase()) ?? null;
}

const STATUS_EVENTS = new Set(['heartbeat', 'agent.heartbeat', 'status', 'agent.status']);
const OFFLINE_EVENTS = new Set(['shutdown', 'agent.shutdown', 'agent.offline']);
const REPORTED: ReadonlyMap<string, ReportedStatus> = new Map<string, ReportedStatus>([
  ['IDLE', 'IDLE'],
  ['BUSY', 'BUSY'],
  ['ERROR', 'ERROR'],
  ['OFFLINE', 'OFFLINE'],
]);

/**
 * DESIGN 3.3 for an event of `eventType` carrying `data`: heartbeat/status events set the reported
 * status from data.status and meta from the rest of data; shutdown/offline events set OFFLINE; an
 * error text in data (error_message, error, last_error) is remembered for the error summary.
 */
export function eventRegistryFacts(f: Facts, eventType: string, data: Record<string, unknown> | undefined): void {
  const type = eventType.trim().toLowerCase();
  if (STATUS_EVENTS.has(type)) {
    const s = data?.['status'];
    if (typeof s === 'string') f.status = REPORTED.get(s.trim().toUpperCase()) ?? null;
    if (data !== undefined) {
      const meta: Record<string, unknown> = {};
      for (const key of Object.keys(data)) if (key !== 'status') meta[key] = data[key];
      f.meta = meta;
    }
  } else if (OFFLINE_EVENTS.has(type)) {
    f.status = 'OFFLINE';
  }
  if (data !== undefined) {
    for (const key of ['error_message', 'error', 'last_error']) {
      const v = data[key];
      if (typeof v === 'string' && v.trim() !== '') {
        f.dataError = v;
        break;
      }
    }
  }
}
