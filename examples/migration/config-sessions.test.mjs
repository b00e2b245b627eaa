/**
 * This file's instance starts with a config of its own (passed to Harper as HARPER_SET_CONFIG)
 * while config-timeout.test.mjs starts another at the same time: each sees only its own.
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

	test('get_configuration shows sessions disabled and not the other file\'s timeout', async () => {
		const config = await sendOperation(ctx.harper, { operation: 'get_configuration' });
		assert.equal(config.authentication.enableSessions, false);
		assert.notEqual(config.authentication.operationTokenTimeout, '2d');
	});
});
