/**
 * A crash loses nothing committed: Harper is SIGKILLed (no shutdown at all), and once started
 * again on the same data it has every record it acknowledged before.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

const database = 'crash';
const table = 'dog';

suite('a SIGKILL loses no acknowledged write', (ctx) => {
	before(async () => {
		await startHarper(ctx);
		await sendOperation(ctx.harper, { operation: 'create_database', database });
		await sendOperation(ctx.harper, { operation: 'create_table', database, table, primary_key: 'id' });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('records inserted before the kill are there after startHarper', async () => {
		const records = Array.from({ length: 50 }, (_, i) => ({ id: i + 1, name: `dog ${i + 1}` }));
		const inserted = await sendOperation(ctx.harper, { operation: 'insert', database, table, records });
		assert.equal(inserted.inserted_hashes.length, records.length);

		const exited = once(ctx.harper.process, 'exit');
		ctx.harper.process.kill('SIGKILL');
		const [code, signal] = await exited;
		assert.equal(code, null);
		assert.equal(signal, 'SIGKILL');
		assert.equal(ctx.harper.process.signalCode, 'SIGKILL');

		await startHarper(ctx);
		const found = await sendOperation(ctx.harper, {
			operation: 'search_by_id',
			database,
			table,
			ids: records.map((record) => record.id),
			get_attributes: ['id', 'name'],
		});
		assert.deepEqual(
			found.map((record) => Number(record.id)).sort((a, b) => a - b),
			records.map((record) => record.id)
		);
	});
});
