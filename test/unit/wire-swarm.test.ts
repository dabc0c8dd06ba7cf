// Wire compatibility of proto/mycelis/swarm/v1/swarm.proto (DESIGN 2.1, issue 2 item 2).
//
// Every byte below is written by hand from the protobuf encoding rules, NOT produced by our encoder:
//   tag   = varint((field_number << 3) | wire_type); wire types: 0 varint, 1 fixed64, 2 length-delimited
//   varint: 7 bits per byte, least significant group first, high bit set on all but the last byte
//   string / bytes / embedded message: tag, varint(length), the bytes
//   double (Struct number_value): fixed64, IEEE 754 little-endian
// Struct = { map<string, Value> fields = 1 }  (each entry: key = 1, value = 2)
// Value  = oneof { null_value = 1 (enum), number_value = 2 (double), string_value = 3, bool_value = 4,
//                  struct_value = 5, list_value = 6 };  ListValue = { repeated Value values = 1 }
// Timestamp = { int64 seconds = 1; int32 nanos = 2 }.   Any = { string type_url = 1; bytes value = 2 }
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { LogEntry, MessageType, MsgEnvelope } from '../../src/gen/mycelis/swarm/v1/swarm.js';

const bytes = (...parts: (number | string)[]): Uint8Array => {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'number') out.push(p);
    else for (const ch of p) out.push(ch.charCodeAt(0)); // ASCII only in this file
  }
  return new Uint8Array(out);
};

// Timestamp{seconds: 1767225600 (2026-01-01T00:00:00Z), nanos: 5}
// 1767225600 = 0x6955B900 -> 7-bit groups, low first: 0x00 0x72 0x56 0x4A 0x06 -> 80 F2 D6 CA 06
const TIMESTAMP = [0x08, 0x80, 0xf2, 0xd6, 0xca, 0x06, /* nanos */ 0x10, 0x05]; // 8 bytes

// Common envelope head: id = 1 "e1", timestamp = 2, source_agent_id = 3 "ag"
const HEAD = [
  0x0a, 0x02, 'e1', // field 1 (id), wire type 2, length 2
  0x12, 0x08, ...TIMESTAMP, // field 2 (timestamp), length 8
  0x1a, 0x02, 'ag', // field 3 (source_agent_id), length 2
];

describe('wire: MsgEnvelope from hand-written bytes', () => {
  it('event payload, with trace/span/team, swarm_context and an unknown field', () => {
    const data = bytes(
      ...HEAD,
      0x20, 0x01, // field 4 (type), varint: MESSAGE_TYPE_EVENT = 1
      0x2a, 0x23, // field 5 (event), length 35:
      /**/ 0x0a, 0x02, 'hb', // EventPayload.event_type = "hb" (4 bytes)
      /**/ 0x12, 0x01, 's', // EventPayload.stream_id = "s" (3 bytes)
      /**/ 0x1a, 0x1a, // EventPayload.data (Struct), length 26 (2 + 26 = 28 bytes):
      /*  */ 0x0a, 0x08, // fields entry, length 8
      /*    */ 0x0a, 0x01, 'k', // key "k"
      /*    */ 0x12, 0x03, 0x1a, 0x01, 'v', // value: Value{string_value "v"}
      /*  */ 0x0a, 0x0e, // fields entry, length 14
      /*    */ 0x0a, 0x01, 'n', // key "n"
      /*    */ 0x12, 0x09, 0x11, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, // Value (9 bytes){number_value 1.5}: tag 0x11 (field 2, fixed64), IEEE 754 LE
      0x52, 0x01, 't', // field 10 (trace_id) = "t"
      0x5a, 0x01, 'p', // field 11 (span_id) = "p"
      0x60, 0x07, // field 12, varint 7: unknown to us (a newer upstream field): skipped
      0x72, 0x03, 'ops', // field 14 (team_id): tag (14 << 3 | 2) = 114 = 0x72
      0x7a, 0x09, // field 15 (swarm_context): tag 122 = 0x7A, Struct length 9:
      /**/ 0x0a, 0x07, 0x0a, 0x01, 'b', 0x12, 0x02, 0x20, 0x01, // entry "b": Value{bool_value true}
    );
    const m = MsgEnvelope.decode(data);
    assert.equal(m.id, 'e1');
    assert.deepEqual(m.timestamp, { seconds: '1767225600', nanos: 5 });
    assert.equal(m.sourceAgentId, 'ag');
    assert.equal(m.type, MessageType.MESSAGE_TYPE_EVENT);
    assert.deepEqual(m.payload, { $case: 'event', value: { eventType: 'hb', streamId: 's', data: { k: 'v', n: 1.5 } } });
    assert.equal(m.traceId, 't');
    assert.equal(m.spanId, 'p');
    assert.equal(m.teamId, 'ops');
    assert.deepEqual(m.swarmContext, { b: true });
  });

  it('text payload', () => {
    const data = bytes(
      ...HEAD,
      0x20, 0x02, // type = MESSAGE_TYPE_TEXT (2)
      0x32, 0x0d, // field 6 (text), length 13:
      /**/ 0x0a, 0x02, 'hi', // content (field 1)
      /**/ 0x12, 0x01, 'r', // recipient_id (field 2)
      /**/ 0x1a, 0x01, 'i', // intent (field 3)
      /**/ 0x22, 0x01, 'c', // context_id (field 4)
    );
    const m = MsgEnvelope.decode(data);
    assert.equal(m.type, MessageType.MESSAGE_TYPE_TEXT);
    assert.deepEqual(m.payload, { $case: 'text', value: { content: 'hi', recipientId: 'r', intent: 'i', contextId: 'c' } });
    assert.equal(m.sourceAgentId, 'ag');
  });

  it('tool_call payload with a Struct holding null and a list', () => {
    const data = bytes(
      ...HEAD,
      0x20, 0x04, // type = MESSAGE_TYPE_TOOL_CALL (4)
      0x3a, 0x20, // field 7 (tool_call), length 32:
      /**/ 0x0a, 0x02, 'c1', // call_id (4 bytes)
      /**/ 0x12, 0x02, 'sh', // tool_name (4 bytes)
      /**/ 0x1a, 0x16, // arguments (Struct), length 22 (24 bytes):
      /*  */ 0x0a, 0x07, 0x0a, 0x01, 'x', 0x12, 0x02, 0x08, 0x00, // entry "x": Value{null_value NULL_VALUE}
      /*  */ 0x0a, 0x0b, 0x0a, 0x01, 'l', 0x12, 0x06, // entry "l": Value (6 bytes):
      /*    */ 0x32, 0x04, 0x0a, 0x02, 0x20, 0x01, // list_value: ListValue{values: [Value{bool_value true}]}
    );
    const m = MsgEnvelope.decode(data);
    assert.equal(m.type, MessageType.MESSAGE_TYPE_TOOL_CALL);
    assert.deepEqual(m.payload, { $case: 'toolCall', value: { callId: 'c1', toolName: 'sh', arguments: { x: null, l: [true] } } });
  });

  it('tool_result payload', () => {
    const data = bytes(
      ...HEAD,
      0x20, 0x05, // type = MESSAGE_TYPE_TOOL_RESULT (5)
      0x42, 0x0d, // field 8 (tool_result), length 13:
      /**/ 0x0a, 0x02, 'c1', // call_id
      /**/ 0x12, 0x00, // result: an empty Struct (present, no fields)
      /**/ 0x18, 0x01, // is_error (field 3, varint) = true
      /**/ 0x22, 0x03, 'bad', // error_message (field 4)
    );
    const m = MsgEnvelope.decode(data);
    assert.equal(m.type, MessageType.MESSAGE_TYPE_TOOL_RESULT);
    assert.deepEqual(m.payload, { $case: 'toolResult', value: { callId: 'c1', result: {}, isError: true, errorMessage: 'bad' } });
  });

  it('binary: type only, no payload', () => {
    const m = MsgEnvelope.decode(bytes(...HEAD, 0x20, 0x03)); // type = MESSAGE_TYPE_BINARY (3)
    assert.equal(m.type, MessageType.MESSAGE_TYPE_BINARY);
    assert.equal(m.payload, undefined);
    assert.equal(m.id, 'e1');
  });
});

describe('wire: LogEntry from hand-written bytes', () => {
  it('fields 1-10 and our 1001-1003', () => {
    const entry = bytes(
      0x0a, 0x08, ...TIMESTAMP, // field 1 (timestamp), length 8
      0x12, 0x02, 'tr', // field 2 (trace_id)
      0x1a, 0x02, 'pl', // field 3 (agent_id)
      0x22, 0x02, 'rs', // field 4 (team_id)
      0x2a, 0x04, 'sw:b', // field 5 (source_uri)
      0x32, 0x04, 'step', // field 6 (intent)
      0x3a, 0x13, // field 7 (context_snapshot: Struct), length 19:
      /**/ 0x0a, 0x11, // fields entry, length 17
      /*  */ 0x0a, 0x01, 'q', // key "q" (3 bytes)
      /*  */ 0x12, 0x0c, // value: Value, length 12 (14 bytes):
      /*    */ 0x2a, 0x0a, // struct_value: Struct, length 10:
      /*      */ 0x0a, 0x08, 0x0a, 0x02, 'ok', 0x12, 0x02, 0x20, 0x01, // entry "ok": Value{bool_value true}
      0x42, 0x07, 'FAILURE', // field 8 (status)
      0x4a, 0x04, 'oops', // field 9 (error_message)
      0x52, 0x0f, // field 10 (raw_payload: Any), length 15:
      /**/ 0x0a, 0x0a, 'type.x/Foo', // type_url (12 bytes)
      /**/ 0x12, 0x01, 0xff, // value: bytes [0xFF] (3 bytes)
      0xca, 0x3e, 0x04, 'WARN', // field 1001 (level): tag 1001 << 3 | 2 = 8010 = 0x1F4A -> varint CA 3E
      0xd2, 0x3e, 0x03, 'svc', // field 1002 (source): 8018 = 0x1F52 -> D2 3E
      0xda, 0x3e, 0x02, 'hi', // field 1003 (message): 8026 = 0x1F5A -> DA 3E
    );
    const m = LogEntry.decode(entry);
    assert.deepEqual(m.timestamp, { seconds: '1767225600', nanos: 5 });
    assert.equal(m.traceId, 'tr');
    assert.equal(m.agentId, 'pl');
    assert.equal(m.teamId, 'rs');
    assert.equal(m.sourceUri, 'sw:b');
    assert.equal(m.intent, 'step');
    assert.deepEqual(m.contextSnapshot, { q: { ok: true } });
    assert.equal(m.status, 'FAILURE');
    assert.equal(m.errorMessage, 'oops');
    assert.equal(m.rawPayload?.typeUrl, 'type.x/Foo');
    assert.deepEqual([...(m.rawPayload?.value ?? [])], [0xff]);
    assert.equal(m.level, 'WARN');
    assert.equal(m.source, 'svc');
    assert.equal(m.message, 'hi');
  });
});
