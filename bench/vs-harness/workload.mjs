// The two workloads of bench/vs-harness.py, written once against the API of
// @harperfast/integration-testing. The same files run under the TypeScript harness and under
// harper-shard's drop-in client: only what the package name resolves to differs.
//
// Each startHarper is timed from the test's side (call to resolve) and appended to the JSON
// lines file named by BENCH_TIMES, so both tools' lives are measured the same way.
import { suite, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { basename } from 'node:path';
import { startHarper, killHarper, teardownHarper, sendOperation } from '@harperfast/integration-testing';

function note(file, event, life, started) {
	const secs = Number(process.hrtime.bigint() - started) / 1e9;
	if (process.env.BENCH_TIMES) {
		appendFileSync(process.env.BENCH_TIMES, JSON.stringify({ file: basename(file), event, life, secs }) + '\n');
	}
}

async function timedStart(ctx, file, life) {
	const started = process.hrtime.bigint();
	await startHarper(ctx);
	note(file, 'start', life, started);
}

const op = (ctx, operation) => sendOperation(ctx.harper, operation);

/** Workload A: one instance, five operations, torn down. */
export function operationsSuite(file) {
	suite(basename(file), (ctx) => {
		before(() => timedStart(ctx, file, 1));
		after(() => teardownHarper(ctx));
		test('create a table', () => op(ctx, { operation: 'create_table', database: 'data', table: 'dogs', primary_key: 'id' }));
		test('insert', async () => {
			const records = Array.from({ length: 20 }, (_, i) => ({ id: i, name: `dog ${i}`, age: i % 7 }));
			const answer = await op(ctx, { operation: 'insert', database: 'data', table: 'dogs', records });
			assert.equal(answer.inserted_hashes.length, 20);
		});
		test('search by value', async () => {
			const found = await op(ctx, { operation: 'search_by_value', database: 'data', table: 'dogs', search_attribute: 'age', search_value: 3, get_attributes: ['id'] });
			assert.deepEqual(found.map((r) => r.id).sort((a, b) => a - b), [3, 10, 17]);
		});
		test('update', async () => {
			const answer = await op(ctx, { operation: 'update', database: 'data', table: 'dogs', records: [{ id: 1, name: 'renamed' }] });
			assert.deepEqual(answer.update_hashes, [1]);
		});
		test('search by id', async () => {
			const [dog] = await op(ctx, { operation: 'search_by_id', database: 'data', table: 'dogs', ids: [1], get_attributes: ['name'] });
			assert.equal(dog.name, 'renamed');
		});
	});
}

/** Workload B: one instance, `lives` lives in all, alternately stopped (killHarper) and killed
 *  (SIGKILL), a record written in each life and every earlier one read back in the next. */
export function restartSuite(file, lives) {
	suite(basename(file), (ctx) => {
		before(() => timedStart(ctx, file, 1));
		after(() => teardownHarper(ctx));
		test('create a table', () => op(ctx, { operation: 'create_table', database: 'data', table: 'lives', primary_key: 'id' }));
		for (let life = 1; life <= lives; life++) {
			test(`life ${life}: what earlier lives wrote is there`, async () => {
				if (life > 1) {
					if (life % 2 === 0) {
						await killHarper(ctx);
					} else {
						const exited = new Promise((resolve) => ctx.harper.process.once('exit', resolve));
						ctx.harper.process.kill('SIGKILL');
						await exited;
					}
					await timedStart(ctx, file, life);
				}
				const found = await op(ctx, { operation: 'search_by_value', database: 'data', table: 'lives', search_attribute: 'id', search_value: '*', get_attributes: ['id'] });
				assert.deepEqual(found.map((r) => r.id).sort((a, b) => a - b), Array.from({ length: life - 1 }, (_, i) => i + 1));
				await op(ctx, { operation: 'insert', database: 'data', table: 'lives', records: [{ id: life }] });
			});
		}
	});
}
