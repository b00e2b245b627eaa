// A stand-in for harper-shard's control socket (docs/control.md): line-delimited JSON over a
// unix socket, the ops status/start/stop/restart/kill/release on a model of instances (no
// Harper runs), the spec's error answers, and a record of every request line it got. Each
// request is checked against the tool's schema (docs/control.schema.json), and each answer the
// mock makes too: what the schema refuses is refused as the tool would, and kept in `violations`.
import net from 'node:net';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { schema, requestErrors, answerErrors } from './control-schema.mjs';

const MAX_LINE = 64 * 1024;
// The ops the schema knows: each request shape names its `op` (`start`'s two shapes, by $ref).
const OPS = new Set(
	schema.$defs.Request.oneOf.map((shape) => shape.properties?.op?.const).filter((op) => op !== undefined)
);

/**
 * The answer the tool gives a request its schema refuses: an unknown op is `unknown_op`; Harper
 * keys of a new instance are the plan's to refuse (`invalid`); any other field is `bad_request`.
 */
function refusal(request, problems) {
	if (!OPS.has(request.op)) {
		const error = typeof request.op === 'string' ? `unknown op \`${request.op}\`` : 'the request has no `op`';
		return { ok: false, code: 'unknown_op', error, tail: [] };
	}
	const code = request.op === 'start' && request.id === undefined ? 'invalid' : 'bad_request';
	return { ok: false, code, error: `the request does not fit docs/control.schema.json: ${problems.join('; ')}`, tail: [] };
}

/**
 * Starts the mock. Options:
 * - boot: whether the shard has its own instance `main` (running)
 * - instances: the `harper.instances` limit (default 4)
 * - operationsUrl(hostname): the operations_url to hand out (default http://<hostname>:9925)
 * Returns { path, dir, requests, violations, instances, env(), respond(fn), crash(id, exit), close() }.
 * `violations`: { request, problems } for each request the schema refused.
 * `respond(fn)` installs a hook: fn(request, socket) may write and return true to take over.
 */
export async function startMock({ boot = false, instances: limit = 4, operationsUrl } = {}) {
	const dir = mkdtempSync(join(tmpdir(), 'hs-mock-'));
	const path = join(dir, 'control.sock');
	const requests = [];
	const violations = [];
	const instances = new Map();
	let next = 1;
	let nextPid = 41000;
	let hook;

	const make = (id, octet, name) => {
		const hostname = `127.0.0.${octet}`;
		const base = join(dir, `127_0_0_${octet}-${randomBytes(3).toString('hex')}`);
		return {
			id,
			name: name ?? id,
			state: 'stopped',
			hostname,
			operations_url: operationsUrl ? operationsUrl(hostname) : `http://${hostname}:9925`,
			http_url: `http://${hostname}:9926`,
			mqtt_url: `mqtt://${hostname}:1883`,
			https_url: null,
			tls: null,
			admin: { username: 'admin', password: randomBytes(8).toString('hex') },
			rootpath: `${base}/r`,
			log_dir: `${base}/r/log`,
			pid: null,
			exit: null,
			harper: { package: 'harperdb@4.7.29' },
		};
	};
	const run = (instance) => {
		instance.state = 'running';
		instance.pid = nextPid++;
		instance.exit = null;
	};
	const end = (instance, exit) => {
		instance.state = 'stopped';
		instance.pid = null;
		instance.exit = exit;
	};
	if (boot) {
		const main = make('main', 2, 'main');
		run(main);
		instances.set('main', main);
	}

	const fail = (code, error, extra = {}) => ({ ok: false, code, error, tail: [], ...extra });
	const copy = (instance) => structuredClone(instance);

	function handle(request) {
		const { op } = request;
		const id = request.id ?? 'main';
		const known = () => instances.get(id);
		switch (op) {
			case 'status': {
				if (request.id === undefined) return { ok: true, instances: [...instances.values()].map(copy) };
				const instance = known();
				return instance ? { ok: true, instance: copy(instance) } : fail('not_found', `no instance has the id \`${id}\``);
			}
			case 'start': {
				// "A `start` without `id` creates an instance" (not `main`, the default of the other ops).
				if (request.id === undefined) return create(request);
				const instance = known();
				if (!instance) return fail('not_found', `no instance has the id \`${id}\``);
				if (instance.state === 'running') return fail('running', `instance ${id} is already running`);
				const harper = source(request);
				if (harper?.ok === false) return harper;
				if (harper) instance.harper = harper;
				run(instance);
				return { ok: true, instance: copy(instance) };
			}
			case 'stop':
			case 'kill':
			case 'restart': {
				const instance = known();
				if (!instance) return fail('not_found', `no instance has the id \`${id}\``);
				if (op !== 'restart' && instance.state !== 'running') {
					return fail('not_running', `instance ${id} is not running`);
				}
				if (instance.state === 'running') {
					end(instance, op === 'kill' ? { code: null, signal: 'SIGKILL' } : { code: 0, signal: null });
				}
				if (op === 'restart') run(instance);
				return { ok: true, instance: copy(instance) };
			}
			case 'release': {
				if (id === 'main') return fail('failed', 'the shard\'s own instance cannot be released');
				if (!instances.delete(id)) return fail('not_found', `no instance has the id \`${id}\``);
				return { ok: true, id };
			}
			default:
				return fail('unknown_op', op === undefined ? 'the request has no `op`' : `unknown op \`${op}\``);
		}
	}

	/** The Harper a request names ({package} or {bin}), undefined if none, or a refusal. */
	function source(request) {
		if (request.runtime !== undefined) return fail('invalid', '`runtime` cannot change in a request');
		if (request.package !== undefined && request.bin !== undefined) return fail('invalid', '`package` and `bin` name two Harpers');
		if (request.package !== undefined) return { package: request.package };
		if (request.bin === undefined) return undefined;
		let isFile = false;
		try {
			isFile = statSync(request.bin).isFile();
		} catch {
			// not there
		}
		if (!isAbsolute(request.bin) || !isFile) return fail('invalid', `harper.bin \`${request.bin}\` is not a file`);
		return { bin: request.bin };
	}

	// Keys, types and ranges are the schema's, checked before this; what is left needs the disk.
	function create(request) {
		const harper = source(request);
		if (harper?.ok === false) return harper;
		for (const fixture of request.fixtures ?? []) {
			let isDir = false;
			try {
				isDir = statSync(fixture).isDirectory();
			} catch {
				// not there
			}
			if (!isDir) return fail('invalid', `harper.fixtures: \`${fixture}\` is not a directory`);
		}
		const live = [...instances.values()].filter((i) => i.id !== 'main').length;
		if (live >= limit) return fail('limit', `${limit} on-demand instances are live and none was released`);
		const n = next++;
		const instance = make(`i${n}`, 2 + n, request.name);
		if (harper) instance.harper = harper;
		if (request.config?.tls) {
			instance.https_url = `https://${instance.hostname}:9927`;
			instance.tls = request.config.tls;
		}
		run(instance);
		instances.set(instance.id, instance);
		return { ok: true, instance: copy(instance) };
	}

	const server = net.createServer((socket) => {
		let buffered = Buffer.alloc(0);
		socket.on('error', () => {});
		socket.on('data', (chunk) => {
			buffered = Buffer.concat([buffered, chunk]);
			let newline;
			while ((newline = buffered.indexOf(0x0a)) !== -1) {
				const line = buffered.subarray(0, newline).toString('utf8');
				buffered = buffered.subarray(newline + 1);
				answerLine(socket, line);
			}
			if (buffered.length > MAX_LINE) {
				socket.end(`${JSON.stringify(fail('too_large', `a request line is over ${MAX_LINE} bytes`))}\n`);
				buffered = Buffer.alloc(0);
			}
		});
	});

	function answerLine(socket, line) {
		let request;
		try {
			request = JSON.parse(line);
		} catch {
			requests.push({ unparsed: line });
			socket.write(`${JSON.stringify(fail('bad_request', 'the line is not JSON'))}\n`);
			return;
		}
		requests.push(request);
		if (request === null || typeof request !== 'object' || Array.isArray(request)) {
			socket.write(`${JSON.stringify(fail('bad_request', 'the line is not a JSON object'))}\n`);
			return;
		}
		if (hook && hook(request, socket) === true) return;
		const problems = requestErrors(request);
		if (problems.length > 0) violations.push({ request, problems });
		const answer = problems.length > 0 ? refusal(request, problems) : handle(request);
		const wrong = answerErrors(answer);
		if (wrong.length > 0) throw new Error(`the mock's answer does not fit docs/control.schema.json: ${wrong.join('; ')}: ${JSON.stringify(answer)}`);
		socket.write(`${JSON.stringify(answer)}\n`);
	}

	await new Promise((resolve, reject) => {
		server.once('error', reject);
		server.listen(path, resolve);
	});

	return {
		path,
		dir,
		requests,
		violations,
		instances,
		/** Points HARPER_SHARD_CONTROL at this mock; returns a function that restores it. */
		env() {
			const before = process.env.HARPER_SHARD_CONTROL;
			process.env.HARPER_SHARD_CONTROL = path;
			return () => {
				if (before === undefined) delete process.env.HARPER_SHARD_CONTROL;
				else process.env.HARPER_SHARD_CONTROL = before;
			};
		},
		respond(fn) {
			hook = fn;
		},
		/** Harper ending by itself: the instance is `exited`. */
		crash(id, exit = { code: 1, signal: null }) {
			const instance = instances.get(id);
			instance.state = 'exited';
			instance.pid = null;
			instance.exit = exit;
		},
		/** The requests recorded from index `from` on. */
		since(from) {
			return requests.slice(from);
		},
		close() {
			return new Promise((resolve) => {
				server.close(() => {
					rmSync(dir, { recursive: true, force: true });
					resolve();
				});
			});
		},
	};
}
