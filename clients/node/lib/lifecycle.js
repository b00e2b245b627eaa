// startHarper / killHarper / teardownHarper / setupHarperWithFixture / sendOperation, with the
// signatures and semantics of @harperfast/integration-testing, on top of harper-shard's control
// socket: the tool starts, stops and removes every instance; this module only asks it to.
import { EventEmitter } from 'node:events';
import { resolve as resolvePath } from 'node:path';
import { equal, ok } from 'node:assert';
import { existsSync } from 'node:fs';
import { HarperShardError, controlSocketPath, exchange, answerError, sendControlRequest } from './control.js';

const IS_CI = !!process.env.CI;
const intFromEnv = (name) => parseInt(process.env[name] || '', 10) || undefined;

// The harness's constants, with its values. Inside harper-shard they describe the harness, not
// the instance: the tool's plan decides ports, timeouts and credentials (its defaults are the same,
// but `admin.password` is random per run unless the plan sets it: use ctx.harper.admin).
export const OPERATIONS_API_PORT = 9925;
export const DEFAULT_ADMIN_USERNAME = 'admin';
export const DEFAULT_ADMIN_PASSWORD = 'Abc1234!';
export const DEFAULT_STARTUP_TIMEOUT_MS =
	intFromEnv('HARPER_INTEGRATION_TEST_STARTUP_TIMEOUT_MS') ?? (IS_CI ? 150000 : 60000);
export const DEFAULT_STARTUP_MAX_MS = intFromEnv('HARPER_INTEGRATION_TEST_STARTUP_MAX_MS') ?? (IS_CI ? 300000 : 120000);
export const DEFAULT_TEARDOWN_GRACE_MS = intFromEnv('HARPER_INTEGRATION_TEST_TEARDOWN_GRACE_MS') ?? 5000;
export const DEFAULT_PORT_RELEASE_TIMEOUT_MS = intFromEnv('HARPER_INTEGRATION_TEST_PORT_RELEASE_TIMEOUT_MS') ?? 5000;
export const HARPER_RUNTIME = process.env.HARPER_RUNTIME || 'node';

/** A plain context for use outside node:test (e.g. a Playwright worker fixture). */
export function createHarperContext(name) {
	return { name };
}

// ---------------------------------------------------------------------------------------------
// ctx.harper.process

const STOP_SIGNALS = new Set(['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT']);
const SIGNAL_NUMBERS = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 9: 'SIGKILL', 15: 'SIGTERM' };

/**
 * Stands in for the ChildProcess the harness put in ctx.harper.process. Harper is the tool's
 * child, not ours, so `kill` asks the tool: SIGKILL sends `kill` (a crash, as Harper would see
 * one), SIGTERM, SIGINT, SIGHUP and SIGQUIT send `stop` (SIGTERM to the group, the grace, SIGKILL).
 * When the answer comes, exitCode and signalCode are set from its `exit` and 'exit' is emitted
 * with (code, signal), then 'close'. A failed request is an 'error' event, as a ChildProcess
 * reports a signal it could not send.
 *
 * Only ends that go through this client are seen: if Harper exits by itself, nothing here learns
 * it until the next killHarper or kill() (which then emit 'exit' from the tool's status).
 */
export class HarperProcess extends EventEmitter {
	#id;
	#pending = new Map(); // op -> promise of its settlement

	constructor(id, pid) {
		super();
		this.#id = id;
		this.pid = pid ?? undefined;
		this.exitCode = null;
		this.signalCode = null;
		this.killed = false;
		this.stdout = null;
		this.stderr = null;
		this.stdin = null;
		this.connected = false;
	}

	/** The harper-shard instance this process belongs to. */
	get instanceId() {
		return this.#id;
	}

	get exited() {
		return this.exitCode !== null || this.signalCode !== null;
	}

	/**
	 * Like ChildProcess#kill: returns at once (true if a request was sent or is under way, false
	 * if Harper has already exited); the outcome is the 'exit' event.
	 */
	kill(signal = 'SIGTERM') {
		const name = typeof signal === 'number' ? SIGNAL_NUMBERS[signal] ?? (signal === 0 ? 0 : undefined) : signal;
		if (name === 0) return !this.exited;
		let op;
		if (name === 'SIGKILL') op = 'kill';
		else if (STOP_SIGNALS.has(name)) op = 'stop';
		else {
			throw new HarperShardError(
				`ctx.harper.process.kill(${JSON.stringify(signal)}): harper-shard can only stop Harper (SIGTERM, ` +
					`SIGINT, SIGHUP, SIGQUIT: its \`stop\`) or crash it (SIGKILL: its \`kill\`)`,
				{ code: 'unsupported' }
			);
		}
		if (this.exited) return false;
		this.killed = true;
		this.terminate(op).catch((error) => this.emit('error', error));
		return true;
	}

	/**
	 * Sends `stop` (with grace_ms when given) or `kill` unless one is already under way, and
	 * resolves once the answer has been applied ('exit' emitted). Internal to this package.
	 */
	terminate(op, graceMs) {
		if (this.exited) return Promise.resolve();
		const pending = this.#pending.get(op);
		if (pending) return pending;
		const request = { op, id: this.#id };
		if (op === 'stop' && graceMs !== undefined) request.grace_ms = graceMs;
		const promise = (async () => {
			const answer = await exchange(request);
			if (answer.ok) {
				this.markExited(answer.instance?.exit, op);
				return;
			}
			if (answer.code !== 'not_running') throw answerError(answer, request);
			// Harper was no longer running: it exited by itself, or another request ended it.
			// The tool's status says how.
			if (this.exited) return;
			const status = await sendControlRequest({ op: 'status', id: this.#id });
			this.markExited(status.instance?.exit, op);
		})();
		this.#pending.set(op, promise);
		promise.then(
			() => this.#pending.delete(op),
			() => this.#pending.delete(op)
		);
		return promise;
	}

	/** Resolves once every request in flight has settled (failures ignored). */
	async settled() {
		await Promise.allSettled([...this.#pending.values()]);
	}

	/**
	 * Records how Harper ended and emits 'exit' and 'close' once. `exit` is the answer's
	 * `{code, signal}`; when the tool sends none, the signal the op stands for is used.
	 */
	markExited(exit, op) {
		if (this.exited) return;
		const code = exit && typeof exit === 'object' ? exit.code ?? null : null;
		let signal = exit && typeof exit === 'object' ? exit.signal ?? null : null;
		if (code === null && signal === null) signal = op === 'kill' ? 'SIGKILL' : 'SIGTERM';
		this.exitCode = code;
		this.signalCode = signal;
		this.emit('exit', code, signal);
		this.emit('close', code, signal);
	}

	ref() {}
	unref() {}
	disconnect() {}
}

// ---------------------------------------------------------------------------------------------
// Contexts and nodes

/** Marks the objects published as ctx.harper, so passing one where a context belongs is caught. */
const HARPER_NODE = Symbol('harperNode');

function assertContext(ctx, fnName, remedy) {
	if (ctx === null || typeof ctx !== 'object' || Array.isArray(ctx)) {
		const isArray = Array.isArray(ctx);
		const received = ctx === null ? 'null' : isArray ? 'an array' : typeof ctx;
		throw new TypeError(
			`${fnName}(ctx) requires a test context object, received ${received}.${isArray ? ' Pass each context separately.' : ''}`
		);
	}
	if (HARPER_NODE in ctx) {
		throw new TypeError(`${fnName}(ctx) expects the test context, but received the Harper node it holds. ${remedy}`);
	}
}

const START_FROM_THE_CONTEXT =
	'Pass the context the node came from: starting from the node itself would publish a new one over it.';
const WRAP_THE_NODE = (fnName) => `Wrap it: ${fnName}({ harper: node }).`;

function str(value, what) {
	if (typeof value !== 'string' || value === '') {
		throw new HarperShardError(`harper-shard's instance has no ${what}`, { code: 'bad_answer' });
	}
	return value;
}

/** ctx.harper for an instance of harper-shard's answer. */
function nodeFrom(instance) {
	if (instance === null || typeof instance !== 'object') {
		throw new HarperShardError('harper-shard answered without the `instance`', { code: 'bad_answer' });
	}
	const admin = instance.admin ?? {};
	const process = new HarperProcess(str(instance.id, 'id'), instance.pid);
	if (instance.state !== undefined && instance.state !== 'running') process.markExited(instance.exit, 'stop');
	const node = {
		id: instance.id,
		name: instance.name,
		hostname: str(instance.hostname, 'hostname'),
		operationsAPIURL: str(instance.operations_url, 'operations_url'),
		httpURL: str(instance.http_url, 'http_url'),
		mqttURL: instance.mqtt_url,
		// Only when the instance's config sets `tls` (or `http.mtls`): Harper then binds HTTPS.
		...(typeof instance.https_url === 'string' ? { httpsURL: instance.https_url, tls: instance.tls ?? undefined } : {}),
		admin: { username: str(admin.username, 'admin.username'), password: str(admin.password, 'admin.password') },
		dataRootDir: str(instance.rootpath, 'rootpath'),
		logDir: instance.log_dir,
		// harper-shard watches Harper's output itself and does not send it on success.
		startupOutput: { stdout: '', stderr: '' },
		process,
	};
	return Object.defineProperty(node, HARPER_NODE, { value: true, enumerable: false });
}

// ---------------------------------------------------------------------------------------------
// Options

function durationMs(value, option) {
	if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
		throw new TypeError(`${option} must be a positive number of milliseconds, got ${String(value)}`);
	}
	return `${Math.ceil(value)}ms`;
}

/**
 * The Harper script a start names, as the harness picks it: `harperBinPath`, else
 * HARPER_INTEGRATION_TEST_INSTALL_SCRIPT, else none (the plan's Harper). Made absolute from this
 * process's folder, where the harness would have looked; one that is not there fails, as in the
 * harness, before anything is sent.
 */
function harperBin(options) {
	const given = options?.harperBinPath || undefined;
	const path = given ?? (process.env.HARPER_INTEGRATION_TEST_INSTALL_SCRIPT || undefined);
	if (path === undefined) return undefined;
	const from = given !== undefined ? 'harperBinPath' : 'HARPER_INTEGRATION_TEST_INSTALL_SCRIPT';
	ok(existsSync(path), `${from} names ${path}, and there is no such file: point it at Harper's dist/bin/harper.js`);
	return resolvePath(path);
}

/** The most bytes of an instance's label that harper-shard keeps (docs/control.md). */
const MAX_LABEL_BYTES = 64;

/**
 * `name` cut to at most MAX_LABEL_BYTES bytes of UTF-8, never inside a character: a suite's name
 * is often longer, and a label must never fail a start.
 */
function instanceLabel(name) {
	let label = '';
	let bytes = 0;
	// A lone surrogate would be a JSON escape that the tool refuses: it becomes U+FFFD.
	for (const char of name.toWellFormed()) {
		bytes += Buffer.byteLength(char);
		if (bytes > MAX_LABEL_BYTES) break;
		label += char;
	}
	return label;
}

/**
 * `config` with the files of its `tls` block(s) made absolute against this process's folder: the
 * harness's Harper runs in the test's folder, harper-shard's in the instance's HOME, and the
 * tool resolves what is still relative against the plan's folder.
 */
function withTlsPaths(config) {
	if (typeof config !== 'object' || Array.isArray(config) || config.tls === null || typeof config.tls !== 'object') return config;
	const absolute = (block) => {
		if (block === null || typeof block !== 'object' || Array.isArray(block)) return block;
		const out = { ...block };
		for (const key of ['certificate', 'privateKey', 'certificateAuthority']) {
			if (typeof out[key] === 'string' && out[key] !== '') out[key] = resolvePath(out[key]);
		}
		return out;
	};
	return { ...config, tls: Array.isArray(config.tls) ? config.tls.map(absolute) : absolute(config.tls) };
}

/** The Harper keys of a `start` request for a new instance, from the harness's options. */
function startKeys(ctx, options = {}, fixtures) {
	const request = { op: 'start' };
	if (typeof ctx.name === 'string' && ctx.name !== '') request.name = instanceLabel(ctx.name);
	if (options.config !== undefined && options.config !== null) request.config = withTlsPaths(options.config);
	if (options.env !== undefined && options.env !== null) {
		// Harper's environment holds strings; spawn() stringified the harness's values, so do we.
		request.env = Object.fromEntries(
			Object.entries(options.env)
				.filter(([, value]) => value !== undefined)
				.map(([key, value]) => [key, String(value)])
		);
	}
	const startup = {};
	if (options.startupTimeoutMs !== undefined) startup.idle = durationMs(options.startupTimeoutMs, 'startupTimeoutMs');
	if (options.startupMaxMs !== undefined) startup.max = durationMs(options.startupMaxMs, 'startupMaxMs');
	if (Object.keys(startup).length) request.startup = startup;
	if (fixtures) request.fixtures = fixtures;
	const bin = harperBin(options);
	if (bin !== undefined) request.bin = bin;
	return request;
}

// ---------------------------------------------------------------------------------------------
// The lifecycle

// The nodes already released (not ids: the spec does not say an id is never used again).
const released = new WeakSet();

/** The instance a pre-seeded ctx.harper (dataRootDir and/or hostname, no id) names. */
async function findSeeded(seed) {
	const { instances } = await sendControlRequest({ op: 'status' });
	const list = Array.isArray(instances) ? instances : [];
	const root = seed.dataRootDir === undefined ? undefined : resolvePath(String(seed.dataRootDir));
	const found = list.find(
		(instance) =>
			(root === undefined || (typeof instance.rootpath === 'string' && resolvePath(instance.rootpath) === root)) &&
			(seed.hostname === undefined || instance.hostname === seed.hostname)
	);
	if (found) return found.id;
	const named = [
		root !== undefined ? `dataRootDir ${root}` : undefined,
		seed.hostname !== undefined ? `hostname ${seed.hostname}` : undefined,
	]
		.filter(Boolean)
		.join(' and ');
	const known = list.map((i) => `${i.id} (${i.hostname}, ${i.rootpath})`).join(', ') || 'none';
	throw new HarperShardError(
		`ctx.harper was pre-seeded with ${named}, but no instance of this shard has it (instances: ${known}). ` +
			'Under harper-shard the tool chooses every address and ROOTPATH, so a context can be pre-seeded only ' +
			'with those of an instance it started before (keep ctx.harper, or copy its dataRootDir and hostname); ' +
			'for a new instance, leave ctx.harper unset and read both from ctx.harper after startHarper.',
		{ code: 'not_found' }
	);
}

async function startNew(ctx, request) {
	const answer = await sendControlRequest(request);
	ctx.harper = nodeFrom(answer.instance);
	return ctx;
}

async function startById(ctx, id, options) {
	const request = { op: 'start', id };
	const bin = harperBin(options);
	if (bin !== undefined) request.bin = bin;
	const previous = ctx.harper?.process;
	// A kill() whose answer has not come yet must finish first, or the start would find it running.
	if (previous instanceof HarperProcess) await previous.settled();
	const answer = await sendControlRequest(request);
	ctx.harper = nodeFrom(answer.instance);
	return ctx;
}

/**
 * Starts Harper and publishes it as ctx.harper.
 * - A fresh context (no ctx.harper) gets a NEW on-demand instance: `start` without id, with the
 *   options as Harper keys (config, env, startup).
 * - A context started before (ctx.harper.id, e.g. after killHarper) starts that instance again,
 *   on the same ROOTPATH and address: `start` with its id. The options are not sent again: the
 *   instance keeps those it was created with; only `harperBinPath` is, as `bin`: the instance
 *   then boots that Harper on its data (an upgrade test).
 * - A context torn down (teardownHarper) gets a new instance, as a fresh one does.
 * - A pre-seeded ctx.harper ({dataRootDir, hostname}, no id) names an instance of this shard:
 *   found by `status`, then started by id; if none has it, this fails and says why.
 *
 * `harperBinPath`, else HARPER_INTEGRATION_TEST_INSTALL_SCRIPT, names the Harper to boot (`bin`);
 * without either, a new instance runs the plan's Harper and a stopped one the Harper it last ran.
 */
export async function startHarper(ctx, options) {
	assertContext(ctx, 'startHarper', START_FROM_THE_CONTEXT);
	controlSocketPath('startHarper');
	const seed = ctx.harper;
	// After teardownHarper the instance is gone: like the harness, start afresh.
	if (seed && typeof seed === 'object' && released.has(seed)) return startNew(ctx, startKeys(ctx, options));
	if (seed && typeof seed === 'object' && typeof seed.id === 'string') return startById(ctx, seed.id, options);
	if (seed && typeof seed === 'object' && (seed.dataRootDir !== undefined || seed.hostname !== undefined)) {
		return startById(ctx, await findSeeded(seed), options);
	}
	return startNew(ctx, startKeys(ctx, options));
}

/**
 * Like startHarper for a new instance, with a component directory copied into its
 * `<ROOTPATH>/components/<name>` before Harper first starts: `start` with `fixtures: [dir]`.
 * As in the harness, it always makes a new instance, whatever ctx.harper holds.
 */
export async function setupHarperWithFixture(ctx, fixturePath, options) {
	assertContext(ctx, 'setupHarperWithFixture', START_FROM_THE_CONTEXT);
	controlSocketPath('setupHarperWithFixture');
	if (typeof fixturePath !== 'string' || fixturePath === '') {
		throw new TypeError('setupHarperWithFixture(ctx, fixturePath) needs the path of a component directory');
	}
	return startNew(ctx, startKeys(ctx, options, [resolvePath(fixturePath)]));
}

/**
 * Stops Harper, keeping its ROOTPATH and address for a later startHarper: `stop`, with
 * `grace_ms` when graceMs is given (else the plan's teardown.grace). Returns at once if there is
 * no process or it has already exited, like the harness.
 */
export async function killHarper(ctx, options) {
	assertContext(ctx, 'killHarper', WRAP_THE_NODE('killHarper'));
	const proc = ctx.harper?.process;
	if (!proc) return;
	if (proc.exitCode !== null || proc.signalCode !== null) return;
	if (!(proc instanceof HarperProcess)) {
		throw new TypeError('killHarper(ctx): ctx.harper.process was not made by startHarper');
	}
	let graceMs;
	if (options?.graceMs !== undefined) {
		const value = options.graceMs;
		if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
			throw new TypeError(`killHarper: graceMs must be a number of milliseconds, 0 or more, got ${String(value)}`);
		}
		graceMs = Math.round(value);
	}
	controlSocketPath('killHarper');
	// A kill('SIGKILL') already under way ends it sooner than a stop would.
	await proc.settled();
	await proc.terminate('stop', graceMs);
}

/**
 * Tears the instance down for good, as the harness's teardown did (kill, then give back the
 * address and remove the directory): `stop` if it runs (as killHarper), then `release`. The
 * shard's own instance (`main`) cannot be released: it is only stopped. A second teardown, or one
 * of a context that never started, does nothing.
 */
export async function teardownHarper(ctx) {
	assertContext(ctx, 'teardownHarper', WRAP_THE_NODE('teardownHarper'));
	const node = ctx.harper;
	if (!node || typeof node !== 'object' || typeof node.id !== 'string' || released.has(node)) return;
	controlSocketPath('teardownHarper');
	await killHarper(ctx);
	if (node.id === 'main') return;
	const request = { op: 'release', id: node.id };
	const answer = await exchange(request);
	if (!answer.ok && answer.code !== 'not_found') throw answerError(answer, request);
	released.add(node);
}

/**
 * POSTs an operation to harper.operationsAPIURL as harper.admin (basic auth), and returns the
 * parsed body; like the harness, a body that is not JSON rejects, and a status other than 200
 * fails an assertion whose message is the body.
 */
export async function sendOperation(harper, operation) {
	const headers = { 'Content-Type': 'application/json' };
	if (harper?.admin?.username !== undefined) {
		const credentials = Buffer.from(`${harper.admin.username}:${harper.admin.password ?? ''}`).toString('base64');
		headers.Authorization = `Basic ${credentials}`;
	}
	const response = await fetch(harper.operationsAPIURL, {
		method: 'POST',
		headers,
		body: JSON.stringify(operation),
	});
	const responseData = await response.json();
	equal(response.status, 200, JSON.stringify(responseData));
	return responseData;
}
