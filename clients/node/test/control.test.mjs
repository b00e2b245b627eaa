// The socket client: one JSON line out, one JSON line back, per connection; partial reads,
// malformed answers, unreachable sockets and `{"ok": false}` answers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMock } from './mock-control.mjs';
import { sendControlRequest, HarperShardError, HarperStartupError } from '../index.js';
import { createLineReader } from '../lib/control.js';

let dir;
before(() => {
	dir = mkdtempSync(join(tmpdir(), 'hs-control-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A server that hands each connection to `onConnection(socket, firstLine)`; records raw bytes. */
async function rawServer(onLine) {
	const path = join(dir, `raw-${Math.random().toString(16).slice(2)}.sock`);
	const received = [];
	const server = net.createServer((socket) => {
		let data = '';
		socket.on('error', () => {});
		socket.on('data', (chunk) => {
			data += chunk;
			if (data.includes('\n')) {
				received.push(data);
				onLine(socket, data);
			}
		});
	});
	await new Promise((resolve) => server.listen(path, resolve));
	return { path, received, close: () => new Promise((resolve) => server.close(resolve)) };
}

test('a request is one JSON line on a connection of its own, and the answer one line back', async () => {
	const server = await rawServer((socket) => socket.end('{"ok":true,"instances":[]}\n'));
	const request = { op: 'status' };
	assert.deepEqual(await sendControlRequest(request, { socketPath: server.path }), { ok: true, instances: [] });
	assert.deepEqual(await sendControlRequest(request, { socketPath: server.path }), { ok: true, instances: [] });
	assert.deepEqual(server.received, ['{"op":"status"}\n', '{"op":"status"}\n']);
	await server.close();
});

test('an answer that arrives in pieces is read whole, a UTF-8 character split included', async () => {
	const answer = Buffer.from('{"ok":true,"id":"i1","note":"café ✓"}\n', 'utf8');
	const cut = answer.indexOf(Buffer.from('é')) + 1; // inside the two bytes of é
	const pieces = [answer.subarray(0, 5), answer.subarray(5, cut), answer.subarray(cut, cut + 3), answer.subarray(cut + 3)];
	const server = await rawServer((socket) => {
		const write = (i) => {
			if (i === pieces.length) return;
			socket.write(pieces[i], () => setImmediate(write, i + 1));
		};
		write(0);
	});
	assert.deepEqual(await sendControlRequest({ op: 'release', id: 'i1' }, { socketPath: server.path }), {
		ok: true,
		id: 'i1',
		note: 'café ✓',
	});
	await server.close();
});

test('the line reader joins bytes across reads and stops at the first newline', () => {
	const reader = createLineReader();
	const bytes = Buffer.from('{"a":"✓"}\n{"b":1}\n', 'utf8');
	for (let i = 0; i < 6; i++) assert.equal(reader.push(bytes.subarray(i, i + 1)), undefined);
	assert.equal(reader.push(bytes.subarray(6)), '{"a":"✓"}');
	const small = createLineReader(4);
	assert.throws(() => small.push(Buffer.from('12345')), { code: 'bad_answer' });
});

test('an answer cut off by the close is read if it is whole JSON', async () => {
	const server = await rawServer((socket) => socket.end('{"ok":true,"id":"i2"}'));
	assert.deepEqual(await sendControlRequest({ op: 'release', id: 'i2' }, { socketPath: server.path }), { ok: true, id: 'i2' });
	await server.close();
});

test('malformed answers are errors that say what came', async () => {
	const cases = [
		['not json\n', /with a line that is not JSON: not json/],
		['[1,2]\n', /not a control answer/],
		['{"instances":[]}\n', /not a control answer \(an object with a boolean `ok`\)/],
		['{"ok":"yes"}\n', /not a control answer/],
		['null\n', /not a control answer/],
	];
	for (const [reply, message] of cases) {
		const server = await rawServer((socket) => socket.end(reply));
		await assert.rejects(sendControlRequest({ op: 'status' }, { socketPath: server.path }), (error) => {
			assert.ok(error instanceof HarperShardError);
			assert.equal(error.code, 'bad_answer');
			assert.match(error.message, message);
			return true;
		});
		await server.close();
	}
});

test('a connection closed before the answer is an error', async () => {
	const server = await rawServer((socket) => socket.destroy());
	await assert.rejects(sendControlRequest({ op: 'kill', id: 'i1' }, { socketPath: server.path }), {
		code: 'closed',
		message: 'harper-shard closed the control connection before it answered kill',
	});
	await server.close();
});

test('no socket at the path, or nobody listening, is a clear error', async () => {
	const missing = join(dir, 'gone.sock');
	await assert.rejects(sendControlRequest({ op: 'status' }, { socketPath: missing }), (error) => {
		assert.equal(error.code, 'unreachable');
		assert.equal(error.cause.code, 'ENOENT');
		assert.match(error.message, /there is no socket there: it exists only while the shard's commands run/);
		assert.match(error.message, /harper-shard run/);
		return true;
	});

	// A socket file whose listener was SIGKILLed is left behind: connecting is refused.
	const stale = join(dir, 'stale.sock');
	const child = spawnSync(process.execPath, [
		'-e',
		`require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
	]);
	assert.equal(child.signal, 'SIGKILL');
	assert.ok(existsSync(stale));
	await assert.rejects(sendControlRequest({ op: 'status' }, { socketPath: stale }), (error) => {
		assert.equal(error.code, 'unreachable');
		assert.equal(error.cause.code, 'ECONNREFUSED');
		assert.match(error.message, /nothing listens there any more/);
		return true;
	});
});

test('an ok:false answer is an Error whose message is `error`, with its code and tail', async () => {
	const server = await rawServer((socket) =>
		socket.end('{"ok":false,"code":"limit","error":"4 instances are live; none was released within 10m","tail":[]}\n')
	);
	await assert.rejects(sendControlRequest({ op: 'start' }, { socketPath: server.path }), (error) => {
		assert.ok(error instanceof HarperShardError);
		assert.ok(!(error instanceof HarperStartupError));
		assert.equal(error.message, '4 instances are live; none was released within 10m');
		assert.equal(error.code, 'limit');
		assert.deepEqual(error.tail, []);
		assert.deepEqual(error.request, { op: 'start' });
		return true;
	});
	await server.close();
});

test('boot_failed is a HarperStartupError whose message carries the tail', async () => {
	const answer = {
		ok: false,
		code: 'boot_failed',
		error: 'Harper exited with status 1 before it was ready',
		tail: ['Error: listen EADDRINUSE 127.0.0.5:9925', '    at Server.listen'],
	};
	const server = await rawServer((socket) => socket.end(`${JSON.stringify(answer)}\n`));
	await assert.rejects(sendControlRequest({ op: 'start' }, { socketPath: server.path }), (error) => {
		assert.ok(error instanceof HarperStartupError);
		assert.ok(error instanceof HarperShardError);
		assert.equal(error.name, 'HarperStartupError');
		assert.equal(error.code, 'boot_failed');
		assert.deepEqual(error.tail, answer.tail);
		assert.equal(
			error.message,
			"Harper exited with status 1 before it was ready\n\nHarper's last output lines:\n" +
				'Error: listen EADDRINUSE 127.0.0.5:9925\n    at Server.listen'
		);
		assert.equal(error.stdout, answer.tail.join('\n'));
		assert.equal(error.stderr, '');
		return true;
	});
	await server.close();
});

test('an ok:false answer without `error` still says what was refused', async () => {
	const server = await rawServer((socket) => socket.end('{"ok":false}\n'));
	await assert.rejects(sendControlRequest({ op: 'stop', id: 'i1' }, { socketPath: server.path }), {
		code: 'failed',
		message: 'harper-shard refused stop (failed) without saying why',
	});
	await server.close();
});

test("the mock's protocol errors come through: unknown op, unknown id", async () => {
	const mock = await startMock();
	const options = { socketPath: mock.path };
	await assert.rejects(sendControlRequest({ op: 'frobnicate' }, options), { code: 'unknown_op', message: 'unknown op `frobnicate`' });
	await assert.rejects(sendControlRequest({ op: 'status', id: 'i9' }, options), { code: 'not_found' });
	assert.deepEqual(mock.requests, [{ op: 'frobnicate' }, { op: 'status', id: 'i9' }]);
	await mock.close();
});

test('a request over the line limit is refused before anything is sent', async () => {
	const mock = await startMock();
	const huge = { op: 'start', config: { blob: 'x'.repeat(64 * 1024) } };
	await assert.rejects(sendControlRequest(huge, { socketPath: mock.path }), (error) => {
		assert.equal(error.code, 'too_large');
		assert.match(error.message, /harper-shard takes at most 65536 a line/);
		return true;
	});
	assert.deepEqual(mock.requests, []);
	await assert.rejects(sendControlRequest('status', { socketPath: mock.path }), TypeError);
	await mock.close();
});

test('the mock refuses what docs/control.schema.json refuses, with the codes the tool gives', async () => {
	const mock = await startMock({ boot: true });
	const options = { socketPath: mock.path };
	const refused = [
		[{ op: 'start', nmae: 'typo' }, 'invalid', /unknown field `nmae`/],
		[{ op: 'start', env: { A: 1 } }, 'invalid', /\/env\/A: 1 is not string/],
		[{ op: 'stop', id: 'main', bin: '/x' }, 'bad_request', /unknown field `bin`/],
		[{ op: 'stop', id: 'main', grace_ms: 600001 }, 'bad_request', /600001 is over 600000/],
		[{ op: 'start', id: 'main', config: {} }, 'bad_request', /unknown field `config`/],
	];
	for (const [request, code, message] of refused) {
		await assert.rejects(sendControlRequest(request, options), (error) => {
			assert.equal(error.code, code, JSON.stringify(request));
			assert.match(error.message, message);
			return true;
		});
	}
	assert.deepEqual(
		mock.violations.map((v) => v.request),
		refused.map(([request]) => request)
	);
	assert.equal((await sendControlRequest({ op: 'stop', id: 'main', grace_ms: 10 }, options)).ok, true);
	assert.equal(mock.violations.length, refused.length);
	await mock.close();
});
