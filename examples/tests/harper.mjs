// A tiny client for Harper's operations API, from the variables harper-shard gives each shard.
import assert from 'node:assert/strict';

export const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this file through harper-shard`);
  return value;
};

const auth = () =>
  'Basic ' + Buffer.from(`${env('HARPER_ADMIN_USERNAME')}:${env('HARPER_ADMIN_PASSWORD')}`).toString('base64');

/** Sends one operation; returns the parsed body, failing on any non-2xx answer. */
export async function op(body) {
  const response = await fetch(env('HARPER_OPERATIONS_API_URL'), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: auth() },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${body.operation} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

/** A database name of this shard's own, so that nothing here depends on another shard. */
export const database = () => 'db_' + env('HARPER_SHARD_NAME').replace(/[^A-Za-z0-9]/g, '_');
