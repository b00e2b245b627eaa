// The validator the mock uses, on the tool's schema: it takes what the tool takes, refuses what
// it refuses, and fails loudly on a keyword it does not know rather than pass it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errors, requestErrors, answerErrors } from './control-schema.mjs';

test('requests the tool takes pass, and the ones it refuses for their shape do not', () => {
	for (const ok of [
		{ op: 'status' },
		{ op: 'start', name: 'auth', env: { A: '1' }, startup: { max: '90000ms' }, fixtures: ['/f'] },
		{ op: 'start', id: 'main', package: 'harperdb@4.7.29' },
		{ op: 'restart', id: 'i1', grace_ms: 0 },
	]) {
		assert.deepEqual(requestErrors(ok), [], JSON.stringify(ok));
	}
	for (const bad of [
		{ op: 'fly' },
		{ id: 'main' },
		{ op: 'kill', id: 7 },
		{ op: 'release', id: 'i1', grace_ms: 5 },
		{ op: 'start', boot: false },
		{ op: 'start', name: '' },
		{ op: 'start', startup: { idle: '1x' } },
	]) {
		assert.notDeepEqual(requestErrors(bad), [], JSON.stringify(bad));
	}
});

test('an answer without its keys does not pass', () => {
	assert.deepEqual(answerErrors({ ok: true, id: 'i1' }), []);
	assert.notDeepEqual(answerErrors({ ok: false, code: 'nope', error: 'x' }), []);
	assert.notDeepEqual(answerErrors({ ok: true, instance: { id: 'i1' } }), []);
});

test('a keyword the validator does not know is an error, not a pass', () => {
	assert.throws(() => errors(1, { multipleOf: 2 }), /`multipleOf` is not supported/);
});
