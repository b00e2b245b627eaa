/**
 * setupHarperWithFixture: the component in fixtures/dogs is installed before Harper first
 * starts, so its table and REST endpoint are there on the first request.
 */
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { setupHarperWithFixture, teardownHarper } from '@harperfast/integration-testing';

const FIXTURE = fileURLToPath(new URL('./fixtures/dogs', import.meta.url));

suite('a component fixture', (ctx) => {
	before(async () => {
		await setupHarperWithFixture(ctx, FIXTURE);
	});

	after(async () => {
		await teardownHarper(ctx);
	});

	const auth = () =>
		`Basic ${Buffer.from(`${ctx.harper.admin.username}:${ctx.harper.admin.password}`).toString('base64')}`;

	test("the component's table takes a record over REST and gives it back", async () => {
		const put = await fetch(`${ctx.harper.httpURL}/Dog/1`, {
			method: 'PUT',
			headers: { 'Content-Type': 'application/json', Authorization: auth() },
			body: JSON.stringify({ id: '1', name: 'Penny' }),
		});
		assert.ok(put.ok, `PUT answered ${put.status}: ${await put.text()}`);

		const get = await fetch(`${ctx.harper.httpURL}/Dog/1`, {
			headers: { Accept: 'application/json', Authorization: auth() },
		});
		assert.equal(get.status, 200);
		const dog = await get.json();
		assert.equal(dog.name, 'Penny');
	});
});
