import { test } from 'node:test';
import assert from 'node:assert/strict';
import { database, op } from './harper.mjs';

test('create a database and a table, insert, and read back', async () => {
  const db = database();
  await op({ operation: 'create_database', database: db });
  await op({ operation: 'create_table', database: db, table: 'dog', primary_key: 'id' });
  const inserted = await op({
    operation: 'insert',
    database: db,
    table: 'dog',
    records: [{ id: 1, name: 'Penny', age: 7 }, { id: 2, name: 'Kato', age: 3 }],
  });
  assert.deepEqual(inserted.inserted_hashes.map(String).sort(), ['1', '2']);
  const [penny] = await op({ operation: 'search_by_id', database: db, table: 'dog', ids: [1], get_attributes: ['*'] });
  assert.equal(penny.name, 'Penny');
  assert.equal(penny.age, 7);
});
