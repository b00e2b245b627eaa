/**
 * Creates a table, inserts, and reads back by id, by value and by SQL, on an instance of the
 * suite's own.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

const database = 'shelter';
const table = 'dog';

suite('create table, insert, search', (ctx) => {
	before(async () => {
		await startHarper(ctx);
		await sendOperation(ctx.harper, { operation: 'create_database', database });
		await sendOperation(ctx.harper, { operation: 'create_table', database, table, primary_key: 'id' });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('the instance listens on a loopback address of its own', () => {
		assert.match(ctx.harper.hostname, /^127\./);
		assert.equal(new URL(ctx.harper.operationsAPIURL).hostname, ctx.harper.hostname);
	});

	test('insert answers with the new ids', async () => {
		const inserted = await sendOperation(ctx.harper, {
			operation: 'insert',
			database,
			table,
			records: [
				{ id: 1, name: 'Penny', age: 7 },
				{ id: 2, name: 'Kato', age: 3 },
				{ id: 3, name: 'Harper', age: 5 },
			],
		});
		assert.deepEqual(inserted.inserted_hashes.map(String).sort(), ['1', '2', '3']);
	});

	test('search_by_id finds a record', async () => {
		const [penny] = await sendOperation(ctx.harper, {
			operation: 'search_by_id',
			database,
			table,
			ids: [1],
			get_attributes: ['*'],
		});
		assert.equal(penny.name, 'Penny');
		assert.equal(penny.age, 7);
	});

	test('search_by_value finds a record by an attribute', async () => {
		const found = await sendOperation(ctx.harper, {
			operation: 'search_by_value',
			database,
			table,
			search_attribute: 'name',
			search_value: 'Kato',
			get_attributes: ['id', 'name'],
		});
		assert.deepEqual(found.map((dog) => String(dog.id)), ['2']);
	});

	test('sql selects with a condition', async () => {
		const rows = await sendOperation(ctx.harper, {
			operation: 'sql',
			sql: `SELECT name FROM ${database}.${table} WHERE age > 4 ORDER BY name`,
		});
		assert.deepEqual(
			rows.map((row) => row.name),
			['Harper', 'Penny']
		);
	});
});
