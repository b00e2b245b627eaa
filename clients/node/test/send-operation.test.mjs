// sendOperation: a JSON POST to operationsAPIURL as the admin, the body parsed; like the
// harness, a status other than 200 fails an assertion whose message is the body.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startMock } from './mock-control.mjs';
import { sendOperation, startHarper, teardownHarper } from '../index.js';

let server;
let url;
const seen = [];
let reply = () => [200, '{"message":"ok"}'];

before(async () => {
	server = http.createServer((request, response) => {
		let body = '';
		request.on('data', (chunk) => (body += chunk));
		request.on('end', () => {
			seen.push({ method: request.method, url: request.url, headers: request.headers, body });
			const [status, text] = reply();
			response.writeHead(status, { 'content-type': 'application/json' }).end(text);
		});
	});
	await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
	url = `http://127.0.0.1:${server.address().port}`;
});
after(() => new Promise((resolve) => server.close(resolve)));

test('POSTs the operation as JSON with the admin basic auth, and returns the parsed body', async () => {
	seen.length = 0;
	reply = () => [200, '{"inserted_hashes":[1]}'];
	const harper = { operationsAPIURL: url, admin: { username: 'admin', password: 'p@ss:word' } };
	const operation = { operation: 'insert', table: 'dog', records: [{ id: 1 }] };
	assert.deepEqual(await sendOperation(harper, operation), { inserted_hashes: [1] });
	assert.equal(seen.length, 1);
	assert.equal(seen[0].method, 'POST');
	assert.equal(seen[0].url, '/');
	assert.equal(seen[0].headers['content-type'], 'application/json');
	assert.equal(seen[0].headers.authorization, `Basic ${Buffer.from('admin:p@ss:word').toString('base64')}`);
	assert.deepEqual(JSON.parse(seen[0].body), operation);
});

test('without admin credentials no Authorization header is sent', async () => {
	seen.length = 0;
	await sendOperation({ operationsAPIURL: url }, { operation: 'describe_all' });
	assert.equal(seen[0].headers.authorization, undefined);
});

test('a status other than 200 is an AssertionError whose message is the body', async () => {
	reply = () => [400, '{"error":"Table \'dog\' does not exist"}'];
	await assert.rejects(sendOperation({ operationsAPIURL: url }, { operation: 'describe_table', table: 'dog' }), (error) => {
		assert.ok(error instanceof assert.AssertionError);
		assert.equal(error.message, '{"error":"Table \'dog\' does not exist"}');
		assert.equal(error.actual, 400);
		assert.equal(error.expected, 200);
		return true;
	});
});

test('a body that is not JSON rejects, as the harness does', async () => {
	reply = () => [500, 'Internal Server Error'];
	await assert.rejects(sendOperation({ operationsAPIURL: url }, { operation: 'x' }), SyntaxError);
});

test("with a started instance it talks to that instance's operations API as its admin", async () => {
	const mock = await startMock({ operationsUrl: () => url });
	const restore = mock.env();
	const ctx = {};
	await startHarper(ctx);
	seen.length = 0;
	reply = () => [200, '[]'];
	assert.deepEqual(await sendOperation(ctx.harper, { operation: 'list_users' }), []);
	const { username, password } = mock.instances.get(ctx.harper.id).admin;
	assert.equal(seen[0].headers.authorization, `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`);
	await teardownHarper(ctx);
	restore();
	await mock.close();
});
