// startHarper / killHarper / teardownHarper / setupHarperWithFixture against the mock control
// socket: the requests each sends, and how the answers become ctx.harper.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { startMock } from './mock-control.mjs';
import * as harness from '../index.js';

const { startHarper, killHarper, teardownHarper, setupHarperWithFixture, sendControlRequest } = harness;

let mock;
let restoreEnv;
let scratch;
before(async () => {
	mock = await startMock();
	restoreEnv = mock.env();
	scratch = mkdtempSync(join(tmpdir(), 'hs-lifecycle-'));
});
after(async () => {
	restoreEnv();
	await mock.close();
	rmSync(scratch, { recursive: true, force: true });
});

/** The requests that `fn` makes the client send. */
async function sent(fn) {
	const from = mock.requests.length;
	await fn();
	return mock.since(from);
}

/** A stand-in Harper script `harper-<name>/dist/bin/harper.js` in the scratch folder; its path. */
function harperScript(name) {
	const dir = join(scratch, `harper-${name}`, 'dist', 'bin');
	mkdirSync(dir, { recursive: true });
	writeFileSync(join(dir, 'harper.js'), '');
	return join(dir, 'harper.js');
}

/** Runs `fn` with HARPER_INTEGRATION_TEST_INSTALL_SCRIPT set to `value`, then restores it. */
async function withInstallScript(value, fn) {
	const saved = process.env.HARPER_INTEGRATION_TEST_INSTALL_SCRIPT;
	process.env.HARPER_INTEGRATION_TEST_INSTALL_SCRIPT = value;
	try {
		return await fn();
	} finally {
		if (saved === undefined) delete process.env.HARPER_INTEGRATION_TEST_INSTALL_SCRIPT;
		else process.env.HARPER_INTEGRATION_TEST_INSTALL_SCRIPT = saved;
	}
}

test('a fresh context starts a new instance, the options sent as Harper keys', async () => {
	const ctx = { name: 'auth tests' };
	const bin = harperScript('a');
	let result;
	const requests = await sent(async () => {
		result = await startHarper(ctx, {
			config: { authentication: { enableSessions: false } },
			env: { FOO: 1, BAR: 'x', FLAG: true, GONE: undefined },
			startupMaxMs: 1500,
			startupTimeoutMs: 250.2,
			harperBinPath: bin,
		});
	});
	assert.deepEqual(requests, [
		{
			op: 'start',
			name: 'auth tests',
			config: { authentication: { enableSessions: false } },
			env: { FOO: '1', BAR: 'x', FLAG: 'true' },
			startup: { idle: '251ms', max: '1500ms' },
			bin,
		},
	]);
	assert.equal(result, ctx);
	assert.deepEqual(mock.instances.get(ctx.harper.id).harper, { bin });

	const instance = mock.instances.get(ctx.harper.id);
	assert.equal(ctx.harper.id, 'i1');
	assert.equal(ctx.harper.name, 'auth tests');
	assert.equal(ctx.harper.hostname, instance.hostname);
	assert.equal(ctx.harper.operationsAPIURL, instance.operations_url);
	assert.equal(ctx.harper.httpURL, instance.http_url);
	assert.equal(ctx.harper.mqttURL, instance.mqtt_url);
	assert.deepEqual(ctx.harper.admin, instance.admin);
	assert.equal(ctx.harper.dataRootDir, instance.rootpath);
	assert.equal(ctx.harper.logDir, instance.log_dir);
	assert.deepEqual(ctx.harper.startupOutput, { stdout: '', stderr: '' });
	assert.ok(ctx.harper.process instanceof EventEmitter);
	assert.equal(ctx.harper.process.pid, instance.pid);
	assert.equal(ctx.harper.process.exitCode, null);
	assert.equal(ctx.harper.process.signalCode, null);
	// The published node is marked, not with an enumerable field: it copies like plain data.
	assert.deepEqual(Object.keys(ctx.harper).sort(), [
		'admin', 'dataRootDir', 'hostname', 'httpURL', 'id', 'logDir', 'mqttURL', 'name', 'operationsAPIURL', 'process', 'startupOutput',
	]);
	await teardownHarper(ctx);
});

test('a config with tls sends its files absolute against the test\'s folder and gives httpsURL and tls', async () => {
	const ctx = {};
	const requests = await sent(() =>
		startHarper(ctx, { config: { tls: { certificate: 'certs/cert.pem', privateKey: '/abs/key.pem' }, logging: { level: 'warn' } } })
	);
	const tls = { certificate: join(process.cwd(), 'certs/cert.pem'), privateKey: '/abs/key.pem' };
	assert.deepEqual(requests, [{ op: 'start', config: { tls, logging: { level: 'warn' } } }]);
	assert.equal(ctx.harper.httpsURL, `https://${ctx.harper.hostname}:9927`);
	assert.deepEqual(ctx.harper.tls, tls);
	await teardownHarper(ctx);
	const list = {};
	const [listed] = await sent(() => startHarper(list, { config: { tls: [{ certificate: 'a.pem' }, { privateKey: 'b.pem' }] } }));
	assert.deepEqual(listed.config.tls, [{ certificate: join(process.cwd(), 'a.pem') }, { privateKey: join(process.cwd(), 'b.pem') }]);
	await teardownHarper(list);
});

test('without options, startHarper sends only `start` (and the context name when it has one)', async () => {
	const ctx = harness.createHarperContext();
	assert.deepEqual(await sent(() => startHarper(ctx)), [{ op: 'start' }]);
	await teardownHarper(ctx);
	const named = harness.createHarperContext('worker-3');
	assert.deepEqual(await sent(() => startHarper(named)), [{ op: 'start', name: 'worker-3' }]);
	await teardownHarper(named);
});

test('a context name over 64 bytes is sent cut to 64 bytes, never inside a character', async () => {
	const byteLength = (text) => Buffer.byteLength(text, 'utf8');
	// `é` is two bytes, the 64th and 65th: it straddles the limit and is left out whole.
	const straddling = `${'a'.repeat(63)}é and the rest of a long suite name`;
	// `🐕` is four bytes, the 62nd to the 65th.
	const emoji = `${'b'.repeat(61)}🐕🐕`;
	const exact = 'c'.repeat(62) + 'é';
	for (const [name, label] of [
		[straddling, 'a'.repeat(63)],
		[emoji, 'b'.repeat(61)],
		[exact, exact],
		// A lone surrogate has no UTF-8: the tool would refuse its JSON escape.
		['x\uD800', 'x\uFFFD'],
	]) {
		const ctx = harness.createHarperContext(name);
		try {
			const [request] = await sent(() => startHarper(ctx));
			assert.equal(request.name, label, name);
			assert.ok(byteLength(request.name) <= 64, name);
		} finally {
			await teardownHarper(ctx);
		}
	}
	assert.equal(byteLength('c'.repeat(62) + 'é'), 64);
});

test('killHarper then startHarper restarts the same instance, on the same data and address', async () => {
	const ctx = {};
	await startHarper(ctx, { config: { a: 1 } });
	const { id, hostname, dataRootDir, operationsAPIURL } = ctx.harper;
	const first = ctx.harper.process;
	const exited = once(first, 'exit');

	assert.deepEqual(await sent(() => killHarper(ctx, { graceMs: 250 })), [{ op: 'stop', id, grace_ms: 250 }]);
	assert.deepEqual(await exited, [0, null]);
	assert.equal(first.exitCode, 0);
	assert.equal(first.signalCode, null);
	assert.equal(mock.instances.get(id).state, 'stopped');

	// The instance keeps the options it was made with: only its id is sent.
	assert.deepEqual(await sent(() => startHarper(ctx, { config: { a: 2 } })), [{ op: 'start', id }]);
	assert.equal(ctx.harper.id, id);
	assert.equal(ctx.harper.hostname, hostname);
	assert.equal(ctx.harper.dataRootDir, dataRootDir);
	assert.equal(ctx.harper.operationsAPIURL, operationsAPIURL);
	assert.notEqual(ctx.harper.process, first);
	assert.equal(ctx.harper.process.pid, mock.instances.get(id).pid);
	assert.notEqual(ctx.harper.process.pid, first.pid);

	// Without graceMs the plan's teardown.grace applies: no grace_ms.
	assert.deepEqual(await sent(() => killHarper(ctx)), [{ op: 'stop', id }]);
	await teardownHarper(ctx);
});

test('startHarper with harperBinPath on a stopped context boots that Harper on the same data and address', async () => {
	const ctx = {};
	await startHarper(ctx);
	const { id, hostname, dataRootDir } = ctx.harper;
	const newer = harperScript('newer');
	// Running: the tool refuses, and nothing changes.
	await assert.rejects(startHarper(ctx, { harperBinPath: newer }), { name: 'HarperShardError', code: 'running' });
	await killHarper(ctx);
	// A relative path means this process's folder, as in the harness: it goes out absolute.
	const relativeBin = relative(process.cwd(), newer);
	assert.deepEqual(await sent(() => startHarper(ctx, { harperBinPath: relativeBin })), [{ op: 'start', id, bin: newer }]);
	assert.deepEqual([ctx.harper.id, ctx.harper.hostname, ctx.harper.dataRootDir], [id, hostname, dataRootDir]);
	assert.deepEqual(mock.instances.get(id).harper, { bin: newer });
	assert.equal(ctx.harper.process.exitCode, null);
	await teardownHarper(ctx);
});

test('HARPER_INTEGRATION_TEST_INSTALL_SCRIPT names the Harper of every start, and harperBinPath comes first', async () => {
	const [fromEnv, given] = [harperScript('env'), harperScript('given')];
	await withInstallScript(fromEnv, async () => {
		const ctx = {};
		assert.deepEqual(await sent(() => startHarper(ctx)), [{ op: 'start', bin: fromEnv }]);
		await killHarper(ctx);
		assert.deepEqual(await sent(() => startHarper(ctx)), [{ op: 'start', id: ctx.harper.id, bin: fromEnv }]);
		await killHarper(ctx);
		assert.deepEqual(await sent(() => startHarper(ctx, { harperBinPath: given })), [{ op: 'start', id: ctx.harper.id, bin: given }]);
		await teardownHarper(ctx);
	});
	// Unset, a stopped instance starts on the Harper it last ran: nothing is named.
	const ctx = {};
	await startHarper(ctx, { harperBinPath: given });
	await killHarper(ctx);
	assert.deepEqual(await sent(() => startHarper(ctx)), [{ op: 'start', id: ctx.harper.id }]);
	assert.deepEqual(mock.instances.get(ctx.harper.id).harper, { bin: given });
	await teardownHarper(ctx);
});

test('a harperBinPath or install script that is not there fails before anything is sent', async () => {
	const missing = join(scratch, 'no-harper', 'harper.js');
	const requests = await sent(async () => {
		await assert.rejects(startHarper({}, { harperBinPath: missing }), { name: 'AssertionError', message: /harperBinPath names .*no-harper/ });
		await withInstallScript(missing, () =>
			assert.rejects(startHarper({}), { name: 'AssertionError', message: /HARPER_INTEGRATION_TEST_INSTALL_SCRIPT names .*no-harper/ })
		);
	});
	assert.deepEqual(requests, []);
});

test('killHarper sends nothing when there is no process, or it has exited', async () => {
	assert.deepEqual(await sent(() => killHarper({})), []);
	assert.deepEqual(await sent(() => killHarper({ harper: { dataRootDir: '/x' } })), []);
	const ctx = {};
	await startHarper(ctx);
	await killHarper(ctx);
	assert.deepEqual(await sent(() => killHarper(ctx)), []);
	await teardownHarper(ctx);
});

test('killHarper of a Harper that exited by itself learns how from status, and emits exit', async () => {
	const ctx = {};
	await startHarper(ctx);
	const { id } = ctx.harper;
	mock.crash(id, { code: 1, signal: null });
	const exited = once(ctx.harper.process, 'exit');
	assert.deepEqual(await sent(() => killHarper(ctx)), [
		{ op: 'stop', id },
		{ op: 'status', id },
	]);
	assert.deepEqual(await exited, [1, null]);
	assert.equal(ctx.harper.process.exitCode, 1);
	await teardownHarper(ctx);
});

test('a pre-seeded dataRootDir and hostname start the instance that has them', async () => {
	const first = {};
	await startHarper(first);
	await killHarper(first);
	const { id, dataRootDir, hostname } = first.harper;

	const ctx = { harper: { dataRootDir: `${dataRootDir}/`, hostname } };
	assert.deepEqual(await sent(() => startHarper(ctx)), [{ op: 'status' }, { op: 'start', id }]);
	assert.equal(ctx.harper.id, id);
	assert.equal(ctx.harper.dataRootDir, dataRootDir);
	assert.equal(ctx.harper.process.exitCode, null);

	// The hostname alone names an instance too.
	await killHarper(ctx);
	const byHost = { harper: { hostname } };
	assert.deepEqual(await sent(() => startHarper(byHost)), [{ op: 'status' }, { op: 'start', id }]);
	await teardownHarper(byHost);
});

test('a pre-seeded dataRootDir that no instance has fails, and says why', async () => {
	const other = {};
	await startHarper(other);
	const dataRootDir = join(scratch, 'harper-integration-test-abc123');
	const ctx = { harper: { dataRootDir, hostname: '127.0.0.9' } };
	let error;
	const requests = await sent(() => startHarper(ctx).catch((e) => (error = e)));
	assert.deepEqual(requests, [{ op: 'status' }]);
	assert.ok(error instanceof harness.HarperShardError);
	assert.equal(error.code, 'not_found');
	assert.ok(error.message.startsWith(`ctx.harper was pre-seeded with dataRootDir ${dataRootDir} and hostname 127.0.0.9, but no instance of this shard has it`));
	assert.match(error.message, new RegExp(`instances: ${other.harper.id} \\(${other.harper.hostname.replaceAll('.', '\\.')}, `));
	assert.match(error.message, /the tool chooses every address and ROOTPATH/);
	// A pre-seed that matches on one field but not the other is no match.
	const mixed = { harper: { dataRootDir: other.harper.dataRootDir, hostname: '127.0.0.250' } };
	await assert.rejects(startHarper(mixed), { code: 'not_found' });
	assert.deepEqual(ctx.harper, { dataRootDir, hostname: '127.0.0.9' });
	await teardownHarper(other);
});

test('teardownHarper stops, then releases; a second teardown sends nothing', async () => {
	const ctx = {};
	await startHarper(ctx);
	const { id } = ctx.harper;
	const exited = once(ctx.harper.process, 'exit');
	assert.deepEqual(await sent(() => teardownHarper(ctx)), [
		{ op: 'stop', id },
		{ op: 'release', id },
	]);
	assert.deepEqual(await exited, [0, null]);
	assert.equal(mock.instances.has(id), false);
	assert.deepEqual(await sent(() => teardownHarper(ctx)), []);
	// A copy of the node finds the instance gone, and that is fine.
	assert.deepEqual(await sent(() => teardownHarper({ harper: { ...ctx.harper } })), [{ op: 'release', id }]);
});

test('teardownHarper of a stopped instance only releases; of a context never started, sends nothing', async () => {
	const ctx = {};
	await startHarper(ctx);
	await killHarper(ctx);
	assert.deepEqual(await sent(() => teardownHarper(ctx)), [{ op: 'release', id: ctx.harper.id }]);
	assert.deepEqual(await sent(() => teardownHarper({})), []);
	assert.deepEqual(await sent(() => teardownHarper({ harper: { dataRootDir: '/x', hostname: '127.0.0.2' } })), []);
});

test('setupHarperWithFixture starts a new instance with the fixture as an absolute path', async () => {
	const fixture = join(scratch, 'my-component');
	mkdirSync(fixture);
	writeFileSync(join(scratch, 'not-a-dir'), '');

	const ctx = {};
	await startHarper(ctx);
	const running = ctx.harper.id;
	// Whatever ctx.harper holds, a new instance: as in the harness.
	const requests = await sent(() =>
		setupHarperWithFixture(ctx, relative(process.cwd(), fixture), { env: { MODE: 'fixture' }, startupMaxMs: 90000 })
	);
	assert.deepEqual(requests, [{ op: 'start', env: { MODE: 'fixture' }, startup: { max: '90000ms' }, fixtures: [fixture] }]);
	assert.notEqual(ctx.harper.id, running);
	await teardownHarper(ctx);
	await teardownHarper({ harper: { id: running } });

	await assert.rejects(setupHarperWithFixture({}, join(scratch, 'not-a-dir')), {
		code: 'invalid',
		message: `harper.fixtures: \`${join(scratch, 'not-a-dir')}\` is not a directory`,
	});
	await assert.rejects(setupHarperWithFixture({}), TypeError);
});

test("the tool's refusals come through: a second start of a running instance, the instance limit", async () => {
	const ctx = {};
	await startHarper(ctx);
	await assert.rejects(startHarper(ctx), { code: 'running', message: `instance ${ctx.harper.id} is already running` });
	await teardownHarper(ctx);

	const small = await startMock({ instances: 1 });
	const restore = small.env();
	const one = {};
	await startHarper(one);
	await assert.rejects(startHarper({}), { code: 'limit' });
	await teardownHarper(one);
	// A context torn down starts a new instance, as a fresh one does.
	const from = small.requests.length;
	await startHarper(one);
	assert.deepEqual(small.since(from), [{ op: 'start' }]);
	assert.equal(one.harper.id, 'i2');
	await teardownHarper(one);
	restore();
	await small.close();
});

test("the shard's own instance can be named by its ROOTPATH; teardown stops it and does not release it", async () => {
	const shard = await startMock({ boot: true });
	const restore = shard.env();
	const main = shard.instances.get('main');
	const ctx = { harper: { dataRootDir: main.rootpath } };
	await assert.rejects(startHarper(ctx), { code: 'running' });
	await sendControlRequest({ op: 'stop', id: 'main' });
	await startHarper(ctx);
	assert.equal(ctx.harper.id, 'main');
	assert.equal(ctx.harper.hostname, '127.0.0.2');
	const from = shard.requests.length;
	await teardownHarper(ctx);
	assert.deepEqual(shard.since(from), [{ op: 'stop', id: 'main' }]);
	restore();
	await shard.close();
});

test('contexts and options are checked before anything is sent', async () => {
	const ctx = {};
	await startHarper(ctx);
	const requests = await sent(async () => {
		for (const bad of [null, undefined, 'ctx', [ctx]]) {
			await assert.rejects(startHarper(bad), { name: 'TypeError', message: /^startHarper\(ctx\) requires a test context object/ });
		}
		await assert.rejects(startHarper(ctx.harper), { name: 'TypeError', message: /received the Harper node it holds/ });
		await assert.rejects(killHarper(ctx.harper), { name: 'TypeError', message: /Wrap it: killHarper\(\{ harper: node \}\)/ });
		await assert.rejects(teardownHarper(ctx.harper), { name: 'TypeError', message: /Wrap it: teardownHarper/ });
		await assert.rejects(setupHarperWithFixture(ctx.harper, '/x'), TypeError);
		await assert.rejects(startHarper({}, { startupMaxMs: -1 }), { name: 'TypeError', message: /startupMaxMs must be a positive/ });
		await assert.rejects(startHarper({}, { startupTimeoutMs: Number.NaN }), TypeError);
		await assert.rejects(killHarper(ctx, { graceMs: '5s' }), { name: 'TypeError', message: /graceMs must be a number/ });
	});
	assert.deepEqual(requests, []);
	await teardownHarper(ctx);
});

test('getNextAvailableLoopbackAddress rejects and says where addresses come from; the pool helpers do nothing', async () => {
	await assert.rejects(harness.getNextAvailableLoopbackAddress(), (error) => {
		assert.equal(error.code, 'unsupported');
		assert.match(error.message, /under harper-shard the tool hands out addresses/);
		assert.match(error.message, /read ctx\.harper\.hostname/);
		return true;
	});
	await harness.releaseLoopbackAddress('127.0.0.2');
	await harness.releaseAllLoopbackAddressesForCurrentProcess();
	assert.deepEqual(await harness.validateLoopbackAddressPool(), { successful: [], failed: [] });
	assert.ok(new harness.ForeignListenerError('x') instanceof Error);
});

test("the harness's constants", () => {
	assert.equal(harness.OPERATIONS_API_PORT, 9925);
	assert.equal(harness.DEFAULT_ADMIN_USERNAME, 'admin');
	assert.equal(harness.DEFAULT_ADMIN_PASSWORD, 'Abc1234!');
	assert.equal(typeof harness.DEFAULT_STARTUP_TIMEOUT_MS, 'number');
	assert.equal(typeof harness.DEFAULT_STARTUP_MAX_MS, 'number');
	assert.equal(typeof harness.DEFAULT_TEARDOWN_GRACE_MS, 'number');
	assert.ok(['node', 'bun'].includes(harness.HARPER_RUNTIME) || typeof harness.HARPER_RUNTIME === 'string');
});
