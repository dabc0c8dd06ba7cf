// The `buf build` descriptor set (src/gen/descriptors.binpb), loaded once on first use. The domain's
// only I/O. The path is resolved relative to this module, so it works from src/ (tsx) and from dist/
// (scripts/copy-assets.mjs copies the file to dist/src/gen/).

import { readFileSync } from 'node:fs';

import { createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import type { DescMessage, FileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

export const MSG_ENVELOPE_TYPE = 'mycelis.swarm.v1.MsgEnvelope';
export const LOG_ENTRY_TYPE = 'mycelis.swarm.v1.LogEntry';
export const SIGNAL_ENVELOPE_TYPE = 'mycelis.protocol.v1.SignalEnvelope';
export const TELEMETRY_ENVELOPE_TYPE = 'mycelis.protocol.v1.TelemetryEnvelope';
export const MISSION_EVENT_TYPE = 'mycelis.protocol.v1.MissionEvent';

export interface SwarmDescriptors {
  readonly registry: FileRegistry;
  readonly msgEnvelope: DescMessage;
  readonly logEntry: DescMessage;
  readonly signalEnvelope: DescMessage;
  readonly telemetryEnvelope: DescMessage;
  readonly missionEvent: DescMessage;
}

let loaded: SwarmDescriptors | undefined;

export function swarmDescriptors(): SwarmDescriptors {
  if (loaded !== undefined) return loaded;
  const bytes = readFileSync(new URL('../gen/descriptors.binpb', import.meta.url));
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  loaded = {
    registry,
    msgEnvelope: requireMessage(registry, MSG_ENVELOPE_TYPE),
    logEntry: requireMessage(registry, LOG_ENTRY_TYPE),
    signalEnvelope: requireMessage(registry, SIGNAL_ENVELOPE_TYPE),
    telemetryEnvelope: requireMessage(registry, TELEMETRY_ENVELOPE_TYPE),
    missionEvent: requireMessage(registry, MISSION_EVENT_TYPE),
  };
  return loaded;
}

function requireMessage(registry: FileRegistry, typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (desc === undefined) throw new Error(`descriptor set has no message ${typeName}: run npm run generate`);
  return desc;
}
