// Log format: readable lines only for a person (LOG_FORMAT=pretty, or auto on a terminal); JSON
// everywhere else. test/e2e/service-logs.test.ts checks the service's real output on a pseudo-terminal
// and through a pipe.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wantsPrettyLogs } from '../../src/logger.js';

describe('logger: format', () => {
  it('auto is readable on a terminal and JSON elsewhere; json and pretty are what they say', () => {
    assert.equal(wantsPrettyLogs('auto', true), true);
    assert.equal(wantsPrettyLogs('auto', false), false);
    assert.equal(wantsPrettyLogs('json', true), false);
    assert.equal(wantsPrettyLogs('json', false), false);
    assert.equal(wantsPrettyLogs('pretty', false), true);
    assert.equal(wantsPrettyLogs('pretty', true), true);
  });
});
