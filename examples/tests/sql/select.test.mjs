import { test } from 'node:test';
import assert from 'node:assert/strict';
import { database, op } from '../harper.mjs';

test('SQL sees what the NoSQL API inserted', async () => {
  const db = database();
  await op({ operation: 'create_database', database: db });
  await op({ operation: 'create_table', database: db, table: 'breed', primary_key: 'id' });
  await op({ operation: 'insert', database: db, table: 'breed', records: [{ id: 'b1', name: 'Whippet' }] });
  const rows = await op({ operation: 'sql', sql: `SELECT name FROM ${db}.breed WHERE id = 'b1'` });
  assert.deepEqual(rows, [{ name: 'Whippet' }]);
});
