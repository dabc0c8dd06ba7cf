// Shared shapes that flow from ingest through the domain into the store. Pure data, no I/O.
//
// Time is carried as integer MICROseconds since the Unix epoch (`…Us`): PostgreSQL's timestamptz
// resolution, exact in a JS number until the year 2255. Convert with src/domain/time.ts.

export const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'] as const;
export type Level = (typeof LEVELS)[number];

export const AGENT_STATUSES = ['IDLE', 'BUSY', 'OFFLINE', 'ERROR'] as const;
/** A reported status as stored in agent_registry.status. */
export type ReportedStatus = (typeof AGENT_STATUSES)[number];

/** One row of log_entries, ready to write. Strings are already sanitized (no NUL, no lone surrogates). */
export interface LogRow {
  /** Deterministic UUID (DESIGN 3.2), lower-case hex with dashes. */
  readonly id: string;
  readonly traceId: string;
  /** Event time (after the sanity rule of DESIGN 3.1), µs since epoch. */
  readonly timestampUs: number;
  readonly level: Level;
  /** Agent id as sent, else parsed from the subject, else "unknown". */
  readonly source: string;
  readonly intent: string;
  readonly message: string;
  /** The context JSONB as JSON text. */
  readonly context: string;
  readonly teamId: string;
  readonly subject: string;
  /** When this service received it, µs since epoch. */
  readonly receivedAtUs: number;
}

/** Reasons a message is dead-lettered (metric label values: keep them few and stable). */
export type RejectReason =
  | 'decode_error' // not protobuf, nor JSON, nor text (or not protobuf of the type a header or subject names)
  | 'invalid_json' // not the proto3 JSON of the type a header or subject names; or JSON-looking bytes that are nothing
  | 'no_payload' // MsgEnvelope without exactly one payload (and not BINARY)
  | 'empty_log_entry' // LogEntry without intent, message or error_message
  | 'too_large' // over MAX_EVENT_BYTES
  | 'too_deep' // Struct nested deeper than 64
  | 'missing_field' // a signal/telemetry envelope or mission event without a field it requires (detail names it)
  | 'invalid_field' // … with a field of the wrong JSON type or a malformed time (detail names it)
  | 'db_rejected'; // PostgreSQL rejected the row (sqlstate set)

/** One row of ingest_rejects (the dead-letter table). */
export interface RejectRow {
  readonly subject: string;
  /** NATS headers as a plain object (multi-valued headers joined by ", "); sanitized. */
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: Uint8Array;
  readonly reason: RejectReason;
  /** Human-readable detail (decoder error, field name, …). */
  readonly detail: string;
  /** SQLSTATE when reason is db_rejected. */
  readonly sqlstate?: string | undefined;
  /**
   * Where the message sat: JetStream's stream name, creation time and sequence. In core mode the name
   * is '' and the "stream" is the process (boot time, arrival count); all 0/'' when unknown. A
   * JetStream dead letter is stored once per (stream, creation time, sequence): a redelivery of a
   * message whose dead letter committed before its ack is not stored again (migration 008).
   */
  readonly streamName: string;
  readonly streamCreatedUs: number;
  readonly streamSeq: number;
  readonly receivedAtUs: number;
}

/**
 * What one valid event means for the registry (DESIGN 3.3), before it meets the stored state.
 * Built by the domain from the decoded message; folded by foldRegistry().
 */
export interface RegistryEvent {
  /** Never "unknown": events without a real source produce no RegistryEvent. */
  readonly agentId: string;
  /** The event's own team, or "" when it had none. */
  readonly eventTeam: string;
  /** Team parsed from a swarm.team.<t>.… subject, or "". */
  readonly subjectTeam: string;
  /** Event time (row timestamp), µs. */
  readonly timeUs: number;
  /** JetStream stream sequence; the tie-break when timeUs is equal (arrival order in core mode). */
  readonly streamSeq: number;
  /** NATS server publish time (JetStream metadata; local receive time in core mode), µs. */
  readonly serverTimeUs: number;
  /** The status this event implies, or null for "unchanged (but OFFLINE revives to IDLE)". */
  readonly status: ReportedStatus | null;
  /** Heartbeat/status `data` minus `status`, shallow-merged over the stored meta; null = no change. */
  readonly meta: Readonly<Record<string, unknown>> | null;
  /** An error message this event carries (trimmed later to 500 chars); null = none. */
  readonly errorMessage: string | null;
}

/** The stored registry row of one agent (agent_registry), as the fold reads and writes it. */
export interface AgentState {
  readonly agentId: string;
  readonly teamId: string;
  readonly status: ReportedStatus;
  readonly lastSeenUs: number;
  /** Event time of the newest applied event. */
  readonly statusAtUs: number;
  /** Its stream sequence (tie-break). */
  readonly statusSeq: number;
  readonly meta: Readonly<Record<string, unknown>>;
  /**
   * For each meta key, the (event time µs, stream seq) of the event its value came from (007). A key of
   * `meta` missing here came from an event no newer than (statusAtUs, statusSeq) (rows written before 007).
   */
  readonly metaAt: Readonly<Record<string, readonly [number, number]>>;
  readonly lastErrorSummary: string | null;
  /** Event time and stream sequence of the newest event that implied a status; 0/0 = none (003). */
  readonly statusSetAtUs: number;
  readonly statusSetSeq: number;
  /** Of the newest event that carried its own team; 0/0 = none, the team is a fallback (003). */
  readonly teamAtUs: number;
  readonly teamSeq: number;
  /** Of the newest event whose error message is lastErrorSummary; 0/0 = none (003). */
  readonly lastErrorAtUs: number;
  readonly lastErrorSeq: number;
}
