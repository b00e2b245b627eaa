// An I/O-bound integration test: a table, then 24 rounds of an insert and a search with 100 ms
// of waiting between them (timers and the network, little CPU). Reads the instance from the
// variables harper-shard gives every shard command.
const url = process.env.HARPER_OPERATIONS_API_URL;
const auth =
  'Basic ' +
  Buffer.from(`${process.env.HARPER_ADMIN_USERNAME}:${process.env.HARPER_ADMIN_PASSWORD}`).toString(
    'base64',
  );

async function op(body) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: auth },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${body.operation}: ${res.status} ${text}`);
  return JSON.parse(text);
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

await op({ operation: 'create_table', database: 'data', table: 'io', primary_key: 'id' });
for (let i = 0; i < 24; i++) {
  await op({ operation: 'insert', database: 'data', table: 'io', records: [{ id: i, n: i }] });
  await pause(100);
  const found = await op({
    operation: 'search_by_value',
    database: 'data',
    table: 'io',
    search_attribute: 'n',
    search_value: i,
    get_attributes: ['id'],
  });
  if (found.length !== 1) throw new Error(`record ${i}: found ${found.length}`);
  await pause(20);
}
