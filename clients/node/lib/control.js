// The client side of harper-shard's control socket (docs/control.md in harper-shard): one JSON
// object per line each way, over the unix socket named by HARPER_SHARD_CONTROL.
import net from 'node:net';

/** A request line may be at most 64 KiB (the newline counted, to be safe). */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** The spec sets no bound on an answer; this one only keeps a broken peer from eating memory. */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * An error from harper-shard, or on the way to it. `code` is the answer's `code`
 * (`not_found`, `running`, `invalid`, `limit`, …) or one of the client's own:
 * `not_in_shard` (no HARPER_SHARD_CONTROL), `unreachable` (nothing at the socket),
 * `closed` (the connection ended before the answer), `bad_answer` (not a control answer),
 * `too_large` (a request over the line limit), `unsupported`.
 */
export class HarperShardError extends Error {
	constructor(message, { code, tail = [], request, answer, cause } = {}) {
		super(message, cause === undefined ? undefined : { cause });
		this.name = 'HarperShardError';
		this.code = code;
		this.tail = tail;
		this.request = request;
		this.answer = answer;
	}
}

/**
 * Harper did not become ready (`boot_failed`). As in `@harperfast/integration-testing`, the
 * message carries Harper's output; harper-shard sends its last lines (`tail`), stdout and stderr
 * together, so they are in `stdout` and `stderr` is empty.
 */
export class HarperStartupError extends HarperShardError {
	constructor(message, stdout = '', stderr = '', details = {}) {
		let full = message;
		if (stdout) full += `\n\nHarper's last output lines:\n${stdout}`;
		if (stderr) full += `\n\nstderr:\n${stderr}`;
		super(full, { code: 'boot_failed', ...details });
		this.name = 'HarperStartupError';
		this.stdout = stdout;
		this.stderr = stderr;
	}
}

const HOW_TO_RUN =
	'Run this suite as a shard command: `harper-shard run harper-shards.yml`, with a shard whose ' +
	'`run` is your test command (e.g. `node --test`); see docs/control.md in harper-shard';

/** The error every entry point that needs the tool gives outside a shard. */
export function notInShardError(what) {
	return new HarperShardError(
		`${what} needs harper-shard: HARPER_SHARD_CONTROL is not set, so this process is not a ` +
			`shard's command. This @harperfast/integration-testing is harper-shard's client: Harper ` +
			`instances come from the tool, not from the test process. ${HOW_TO_RUN}.`,
		{ code: 'not_in_shard' }
	);
}

/** The control socket's path, or the not-in-a-shard error. */
export function controlSocketPath(what = 'this call') {
	const path = process.env.HARPER_SHARD_CONTROL;
	if (!path) throw notInShardError(what);
	return path;
}

function unreachableError(error, path) {
	const where = `harper-shard's control socket (HARPER_SHARD_CONTROL=${path})`;
	let why;
	switch (error.code) {
		case 'ENOENT':
			why =
				'there is no socket there: it exists only while the shard\'s commands run, so either ' +
				'the shard has ended or this process was given the variable by something else';
			break;
		case 'ECONNREFUSED':
			why = 'nothing listens there any more: the shard\'s commands have ended';
			break;
		case 'EACCES':
		case 'EPERM':
			why = 'permission denied: the socket belongs to another user\'s run';
			break;
		case 'ENOTSOCK':
			why = 'that path is not a socket';
			break;
		default:
			why = error.message;
	}
	return new HarperShardError(`cannot reach ${where}: ${why} (${error.code ?? 'error'}). ${HOW_TO_RUN}.`, {
		code: 'unreachable',
		cause: error,
	});
}

/**
 * Collects the bytes of one answer line across reads. `push` returns the line (without its
 * newline) once it is whole, else undefined; bytes are joined before decoding, so a UTF-8
 * character split between two reads is decoded whole.
 */
export function createLineReader(maxBytes = MAX_ANSWER_BYTES) {
	const chunks = [];
	let size = 0;
	return {
		push(chunk) {
			const newline = chunk.indexOf(0x0a);
			const part = newline === -1 ? chunk : chunk.subarray(0, newline);
			size += part.length;
			if (size > maxBytes) {
				throw new HarperShardError(`harper-shard's answer is over ${maxBytes} bytes without a newline`, {
					code: 'bad_answer',
				});
			}
			chunks.push(part);
			return newline === -1 ? undefined : Buffer.concat(chunks).toString('utf8');
		},
		/** What arrived without a newline, if anything. */
		rest() {
			return size === 0 ? undefined : Buffer.concat(chunks).toString('utf8');
		},
	};
}

const preview = (text) => (text.length > 200 ? `${text.slice(0, 200)}…` : text);

/** Checks that `line` is a control answer; returns it parsed. */
export function parseAnswer(line, request) {
	let answer;
	try {
		answer = JSON.parse(line);
	} catch {
		throw new HarperShardError(`harper-shard answered ${request?.op ?? 'a request'} with a line that is not JSON: ${preview(line)}`, {
			code: 'bad_answer',
			request,
		});
	}
	if (answer === null || typeof answer !== 'object' || Array.isArray(answer) || typeof answer.ok !== 'boolean') {
		throw new HarperShardError(
			`harper-shard answered ${request?.op ?? 'a request'} with something that is not a control answer ` +
				`(an object with a boolean \`ok\`): ${preview(line)}`,
			{ code: 'bad_answer', request, answer }
		);
	}
	return answer;
}

/** The Error an `{"ok": false}` answer becomes: the message is its `error`. */
export function answerError(answer, request) {
	const code = typeof answer.code === 'string' ? answer.code : 'failed';
	const tail = Array.isArray(answer.tail) ? answer.tail.map(String) : [];
	const message =
		typeof answer.error === 'string' && answer.error !== ''
			? answer.error
			: `harper-shard refused ${request?.op ?? 'the request'} (${code}) without saying why`;
	if (code === 'boot_failed') return new HarperStartupError(message, tail.join('\n'), '', { tail, request, answer });
	return new HarperShardError(message, { code, tail, request, answer });
}

/**
 * Sends one request on a connection of its own and resolves with the answer as it came, `ok`
 * true or false. Rejects for anything that is not an answer (no socket, closed, malformed).
 */
export function exchange(request, { socketPath } = {}) {
	return new Promise((resolve, reject) => {
		const path = socketPath ?? controlSocketPath(`harper-shard's \`${request?.op}\``);
		const line = `${JSON.stringify(request)}\n`;
		if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) {
			reject(
				new HarperShardError(
					`the ${request?.op} request is ${Buffer.byteLength(line)} bytes; harper-shard takes at most ` +
						`${MAX_REQUEST_BYTES} a line (make its config or env smaller, or set them in the plan)`,
					{ code: 'too_large', request }
				)
			);
			return;
		}
		const reader = createLineReader();
		let settled = false;
		const socket = net.createConnection(path);
		const finish = (error, answer) => {
			if (settled) return;
			settled = true;
			socket.destroy();
			if (error) reject(error);
			else resolve(answer);
		};
		const answered = (text) => {
			try {
				finish(null, parseAnswer(text, request));
			} catch (error) {
				finish(error);
			}
		};
		socket.on('connect', () => socket.write(line));
		socket.on('data', (chunk) => {
			let text;
			try {
				text = reader.push(chunk);
			} catch (error) {
				finish(error);
				return;
			}
			if (text !== undefined) answered(text);
		});
		socket.on('end', () => {
			// An answer cut off by the peer's close is still read if it is whole JSON.
			const rest = reader.rest();
			if (rest !== undefined) answered(rest);
			else
				finish(
					new HarperShardError(`harper-shard closed the control connection before it answered ${request?.op}`, {
						code: 'closed',
						request,
					})
				);
		});
		socket.on('error', (error) => {
			if (error.syscall === 'connect') finish(unreachableError(error, path));
			else
				finish(
					new HarperShardError(`the control connection failed during ${request?.op}: ${error.message}`, {
						code: 'closed',
						request,
						cause: error,
					})
				);
		});
		socket.on('close', () =>
			finish(
				new HarperShardError(`harper-shard closed the control connection before it answered ${request?.op}`, {
					code: 'closed',
					request,
				})
			)
		);
	});
}

/**
 * Sends one request to harper-shard's control socket; resolves with an `ok` answer, rejects
 * with a HarperShardError (HarperStartupError for `boot_failed`) for any other.
 *
 * @param {object} request e.g. `{op: 'status'}`, `{op: 'restart', id: 'i1', grace_ms: 500}`
 */
export async function sendControlRequest(request, options) {
	if (request === null || typeof request !== 'object' || Array.isArray(request) || typeof request.op !== 'string') {
		throw new TypeError('sendControlRequest(request) takes an object with a string `op`');
	}
	const answer = await exchange(request, options);
	if (!answer.ok) throw answerError(answer, request);
	return answer;
}
