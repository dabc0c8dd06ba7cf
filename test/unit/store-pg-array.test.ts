// pgTextArray (src/store/pg-array.ts) must send PostgreSQL exactly the text node-postgres sends for the
// same array parameter, whatever the strings hold.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';

import { pgTextArray } from '../../src/store/pg-array.js';
import { prng } from '../helpers/prng.js';

const require = createRequire(import.meta.url);
const { prepareValue } = require('pg/lib/utils.js') as { prepareValue: (v: unknown) => unknown };


describe('pgTextArray', () => {
  it("equals node-postgres' own array text on generated strings, NULLs and the registry's values", () => {
    const next = prng(16);
    const alphabet = ['a', 'Z', '0', ' ', ',', '{', '}', '"', '\\', "'", '\n', '\t', 'é', '€', '😀', 'NULL', 'null', '\\"', '""', '\\\\'];
    for (let i = 0; i < 3_000; i++) {
      const n = Math.floor(next() * 12);
      const values: (string | null)[] = [];
      for (let k = 0; k < n; k++) {
        if (next() < 0.1) {
          values.push(null);
          continue;
        }
        let s = '';
        const len = Math.floor(next() * 20);
        for (let c = 0; c < len; c++) s += alphabet[Math.floor(next() * alphabet.length)]!;
        values.push(s);
      }
      assert.equal(pgTextArray(values), prepareValue(values), JSON.stringify(values));
    }
    const registry = [
      ['agent-001', 'team-7', 'IDLE', '2026-12-05T08:00:00.123456Z', '{"battery":0.5,"note":"say \\"hi\\" \\\\ bye"}', '{"battery":[1,2]}', '17', ''],
      [],
      [''],
    ];
    for (const values of registry) assert.equal(pgTextArray(values), prepareValue(values));
    assert.equal(pgTextArray([null, 'x', undefined]), '{NULL,"x",NULL}');
  });
});
