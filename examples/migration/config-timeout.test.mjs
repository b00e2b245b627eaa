/**
 * This file's instance starts with a config of its own while config-sessions.test.mjs starts
 * another at the same time: each sees only its own.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

suite('a two-day operation token timeout', (ctx) => {
	before(async () => {
		await startHarper(ctx, { config: { authentication: { operationTokenTimeout: '2d' } } });
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	test('get_configuration shows the timeout and not the other file\'s sessions setting', async () => {
		const config = await sendOperation(ctx.harper, { operation: 'get_configuration' });
		assert.equal(config.authentication.operationTokenTimeout, '2d');
		assert.notEqual(config.authentication.enableSessions, false);
	});
});
