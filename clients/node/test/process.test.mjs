// ctx.harper.process: kill('SIGKILL') is the tool's `kill`, other stops its `stop`; the answer's
// `exit` becomes exitCode/signalCode and the 'exit' event, as a crash test expects.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { startMock } from './mock-control.mjs';
import { startHarper, killHarper, teardownHarper } from '../index.js';

let mock;
let restoreEnv;
before(async () => {
	mock = await startMock();
	restoreEnv = mock.env();
});
after(async () => {
	restoreEnv();
	await mock.close();
});

async function started() {
	const ctx = {};
	await startHarper(ctx);
	return ctx;
}

test("kill('SIGKILL') sends `kill`; 'exit' comes with the signal; startHarper brings it back", async () => {
	const ctx = await started();
	const { id } = ctx.harper;
	const proc = ctx.harper.process;
	const from = mock.requests.length;
	const exited = once(proc, 'exit');
	const closed = once(proc, 'close');

	assert.equal(proc.kill('SIGKILL'), true);
	assert.equal(proc.killed, true);
	assert.deepEqual(await exited, [null, 'SIGKILL']);
	assert.deepEqual(await closed, [null, 'SIGKILL']);
	assert.equal(proc.exitCode, null);
	assert.equal(proc.signalCode, 'SIGKILL');
	assert.deepEqual(mock.since(from), [{ op: 'kill', id }]);
	assert.equal(mock.instances.get(id).state, 'stopped');

	await startHarper(ctx);
	assert.deepEqual(mock.since(from), [{ op: 'kill', id }, { op: 'start', id }]);
	assert.equal(ctx.harper.id, id);
	assert.equal(ctx.harper.process.signalCode, null);
	await teardownHarper(ctx);
});

test("kill(), kill('SIGTERM') and kill('SIGINT') send `stop`; 'exit' comes with the code", async () => {
	for (const signal of [undefined, 'SIGTERM', 'SIGINT', 15]) {
		const ctx = await started();
		const proc = ctx.harper.process;
		const from = mock.requests.length;
		const exited = once(proc, 'exit');
		assert.equal(signal === undefined ? proc.kill() : proc.kill(signal), true);
		assert.deepEqual(await exited, [0, null]);
		assert.equal(proc.exitCode, 0);
		assert.equal(proc.signalCode, null);
		assert.deepEqual(mock.since(from), [{ op: 'stop', id: ctx.harper.id }]);
		await teardownHarper(ctx);
	}
});

test('startHarper right after kill() waits for its answer instead of racing it', async () => {
	const ctx = await started();
	const { id } = ctx.harper;
	const proc = ctx.harper.process;
	const from = mock.requests.length;
	proc.kill('SIGKILL');
	await startHarper(ctx);
	assert.deepEqual(mock.since(from), [{ op: 'kill', id }, { op: 'start', id }]);
	assert.equal(proc.signalCode, 'SIGKILL');
	assert.equal(mock.instances.get(id).state, 'running');
	await teardownHarper(ctx);
});

test('killHarper during a kill() under way waits for it and sends nothing more', async () => {
	const ctx = await started();
	const proc = ctx.harper.process;
	const from = mock.requests.length;
	proc.kill('SIGKILL');
	assert.equal(proc.kill('SIGKILL'), true);
	await killHarper(ctx);
	assert.deepEqual(mock.since(from), [{ op: 'kill', id: ctx.harper.id }]);
	assert.equal(proc.signalCode, 'SIGKILL');
	await teardownHarper(ctx);
});

test('kill(0) only asks whether Harper runs; other signals are refused; kill after exit is false', async () => {
	const ctx = await started();
	const proc = ctx.harper.process;
	const from = mock.requests.length;
	assert.equal(proc.kill(0), true);
	assert.throws(() => proc.kill('SIGUSR1'), { code: 'unsupported', message: /can only stop Harper .* or crash it/ });
	assert.throws(() => proc.kill('SIGSTOP'), { code: 'unsupported' });
	assert.deepEqual(mock.since(from), []);
	await killHarper(ctx);
	assert.equal(proc.kill('SIGKILL'), false);
	assert.equal(proc.kill(0), false);
	assert.deepEqual(mock.since(from), [{ op: 'stop', id: ctx.harper.id }]);
	await teardownHarper(ctx);
});

test("a kill the tool refuses is an 'error' event, and Harper counts as running", async () => {
	const ctx = await started();
	const proc = ctx.harper.process;
	mock.respond((request, socket) => {
		if (request.op !== 'kill') return false;
		socket.write('{"ok":false,"code":"failed","error":"the keeper of 127.0.0.3 died","tail":[]}\n');
		return true;
	});
	proc.kill('SIGKILL');
	const [error] = await once(proc, 'error');
	mock.respond(undefined);
	assert.equal(error.message, 'the keeper of 127.0.0.3 died');
	assert.equal(error.code, 'failed');
	assert.equal(proc.exitCode, null);
	assert.equal(proc.signalCode, null);
	await teardownHarper(ctx);
	assert.equal(proc.exitCode, 0);
});

test("kill('SIGKILL') of a Harper that already exited by itself reports that exit", async () => {
	const ctx = await started();
	const { id } = ctx.harper;
	mock.crash(id, { code: null, signal: 'SIGSEGV' });
	const exited = once(ctx.harper.process, 'exit');
	const from = mock.requests.length;
	ctx.harper.process.kill('SIGKILL');
	assert.deepEqual(await exited, [null, 'SIGSEGV']);
	assert.deepEqual(mock.since(from), [{ op: 'kill', id }, { op: 'status', id }]);
	await teardownHarper(ctx);
});
