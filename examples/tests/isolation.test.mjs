import { test } from 'node:test';
import assert from 'node:assert/strict';
import { database, op } from './harper.mjs';

// This runs after database.test.mjs in the same shard: same instance, so its data is here,
// while no other shard's database is.
test('the shard keeps its own data between its commands, and sees no other shard\'s', async () => {
  const described = await op({ operation: 'describe_all' });
  const names = Object.keys(described);
  assert.ok(names.includes(database()), `own database missing from ${names.join(', ')}`);
  assert.deepEqual(names.filter((n) => n.startsWith('db_') && n !== database()), []);
});
