// Outside harper-shard (no HARPER_SHARD_CONTROL), every entry point that needs the tool fails at
// once, saying how to run under it; those that need nothing from it still work.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startMock } from './mock-control.mjs';

delete process.env.HARPER_SHARD_CONTROL;
const harness = await import('../index.js');
const { startHarper, setupHarperWithFixture, killHarper, teardownHarper, sendControlRequest } = harness;

const notInShard = (what) => (error) => {
	assert.equal(error.code, 'not_in_shard');
	assert.ok(error instanceof harness.HarperShardError);
	assert.match(error.message, new RegExp(`^${what} needs harper-shard: HARPER_SHARD_CONTROL is not set`));
	assert.match(error.message, /harper-shard run harper-shards\.yml/);
	assert.match(error.message, /docs\/control\.md/);
	return true;
};

let mock;
before(async () => {
	mock = await startMock();
});
after(() => mock.close());

test('importing the package needs nothing from the tool', () => {
	assert.equal(typeof startHarper, 'function');
	assert.equal(harness.DEFAULT_ADMIN_USERNAME, 'admin');
});

test('startHarper, setupHarperWithFixture and raw requests fail at once with how to run', async () => {
	await assert.rejects(startHarper({ name: 'x' }), notInShard('startHarper'));
	await assert.rejects(startHarper({ harper: { dataRootDir: '/tmp/x' } }), notInShard('startHarper'));
	await assert.rejects(setupHarperWithFixture({}, '/tmp'), notInShard('setupHarperWithFixture'));
	await assert.rejects(sendControlRequest({ op: 'status' }), notInShard("harper-shard's `status`"));
	assert.deepEqual(mock.requests, []);
});

test('killHarper, teardownHarper and process.kill of a started instance fail at once', async () => {
	const restore = mock.env();
	const ctx = {};
	await startHarper(ctx);
	restore();
	const from = mock.requests.length;

	await assert.rejects(killHarper(ctx), notInShard('killHarper'));
	await assert.rejects(teardownHarper(ctx), notInShard('teardownHarper'));
	const failed = once(ctx.harper.process, 'error');
	assert.equal(ctx.harper.process.kill('SIGKILL'), true);
	const [error] = await failed;
	notInShard("harper-shard's `kill`")(error);
	assert.deepEqual(mock.since(from), []);
	assert.equal(ctx.harper.process.exitCode, null);
	assert.equal(ctx.harper.process.signalCode, null);

	mock.env();
	await teardownHarper(ctx);
	restore();
});

test('what needs nothing from the tool works outside it', async () => {
	await killHarper({});
	await teardownHarper({});
	await teardownHarper({ harper: { dataRootDir: '/tmp/never-started' } });
	assert.deepEqual(harness.createHarperContext('w1'), { name: 'w1' });
	assert.equal(typeof (await harness.targz(import.meta.dirname)), 'string');
});
