/**
 * Each suite starts its instance with a config of its own (passed to Harper as
 * HARPER_SET_CONFIG), and that instance reports it.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

suite('sessions disabled', (ctx) => {
	before(async () => {
		await startHarper(ctx, { config: { authentication: { enableSessions: false } } });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('get_configuration shows sessions disabled', async () => {
		const config = await sendOperation(ctx.harper, { operation: 'get_configuration' });
		assert.equal(config.authentication.enableSessions, false);
	});
});

suite('a two-day operation token timeout', (ctx) => {
	before(async () => {
		await startHarper(ctx, { config: { authentication: { operationTokenTimeout: '2d' } } });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('get_configuration shows the timeout', async () => {
		const config = await sendOperation(ctx.harper, { operation: 'get_configuration' });
		assert.equal(config.authentication.operationTokenTimeout, '2d');
	});
});
