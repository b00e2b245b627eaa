/**
 * A restart keeps the data: killHarper stops Harper and keeps its data directory and address,
 * and startHarper on the same context starts it again on both.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarper, killHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

const database = 'restart';
const table = 'dog';

suite('restart keeps the data', (ctx) => {
	before(async () => {
		await startHarper(ctx);
		await sendOperation(ctx.harper, { operation: 'create_database', database });
		await sendOperation(ctx.harper, { operation: 'create_table', database, table, primary_key: 'id' });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('a record inserted before killHarper is there after startHarper', async () => {
		await sendOperation(ctx.harper, {
			operation: 'insert',
			database,
			table,
			records: [{ id: 1, name: 'Penny' }],
		});
		const { hostname, dataRootDir } = ctx.harper;

		await killHarper(ctx);
		const { exitCode, signalCode } = ctx.harper.process;
		assert.ok(exitCode !== null || signalCode !== null, 'Harper has exited');

		await startHarper(ctx);
		assert.equal(ctx.harper.hostname, hostname);
		assert.equal(ctx.harper.dataRootDir, dataRootDir);
		const [penny] = await sendOperation(ctx.harper, {
			operation: 'search_by_id',
			database,
			table,
			ids: [1],
			get_attributes: ['*'],
		});
		assert.equal(penny?.name, 'Penny');
	});
});
