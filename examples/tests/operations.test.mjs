import { test } from 'node:test';
import assert from 'node:assert/strict';
import { env, op } from './harper.mjs';

test('the health endpoint answers', async () => {
  const response = await fetch(`${env('HARPER_OPERATIONS_API_URL')}/health`);
  assert.equal(response.status, 200);
});

test('the instance that answers is this shard\'s own', async () => {
  const config = await op({ operation: 'get_configuration' });
  assert.equal(config.rootPath, env('HARPER_ROOTPATH'));
});

test('the instance listens on this shard\'s address', () => {
  const url = new URL(env('HARPER_OPERATIONS_API_URL'));
  assert.equal(url.hostname, env('HARPER_HOSTNAME'));
  assert.match(url.hostname, /^127\./);
});
